"""The checked-in generated modules must be exactly what scripts/gen_proto.py produces."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load_generator():
    pytest.importorskip("grpc_tools")
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_code_matches_the_proto(tmp_path):
    gen = _load_generator()
    fresh = gen.generate(tmp_path)
    for path in fresh:
        name = path.relative_to(tmp_path)
        checked_in = gen.DEFAULT_OUT / name
        assert checked_in.exists(), f"{name} is missing: run python scripts/gen_proto.py"
        assert checked_in.read_text() == path.read_text(), (
            f"{name} differs from proto/{gen.PROTO}: run python scripts/gen_proto.py"
        )


def test_generated_modules_import_inside_the_package():
    from bridgefs.rpc import pb, pb_grpc

    assert pb.DESCRIPTOR.package == "bridgefs.v1"
    assert pb_grpc.FilesStub.__module__ == "bridgefs.rpc.bridgefs.v1.files_pb2_grpc"
    # Every reply carries an errno field: the protocol's way of answering a failure.
    service = pb.DESCRIPTOR.services_by_name["Files"]
    for method in service.methods:
        assert "errno" in method.output_type.fields_by_name, method.name


def test_change_kinds_are_the_contracts_numbers():
    from bridgefs.change_kinds import ChangeKind
    from bridgefs.rpc import pb

    assert {k.name: int(k) for k in ChangeKind} == dict(pb.Change.Kind.items())
