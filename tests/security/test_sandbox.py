"""The Landlock sandbox behind the confinement: with the confinement broken on purpose (a
test-only hook that resolves ``..``), a sandboxed server still cannot open a file outside its
shares, while everything a share allows still works."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest
from securitykit import Raw, run_cli

from bridgefs.rpc import pb
from bridgefs.server import sandbox

ESCAPE = b"../outside/secret"


@pytest.fixture
def landlock():
    try:
        return sandbox.abi_version()
    except OSError as exc:
        pytest.fail(f"this kernel has no Landlock ({exc}); the sandbox cannot be shown here")


def _broken_server(serve, tmp_path, share, mode: str, monkeypatch):
    monkeypatch.setenv("BRIDGEFS_TEST_BREAK_CONFINEMENT", "1")
    return serve(
        "--listen",
        f"unix:{tmp_path / 's.sock'}",
        "--sandbox",
        mode,
        shares={"s": str(share), "ro": f"{share}:ro"},
    )


def test_broken_confinement_reads_outside_without_the_sandbox(tree, tmp_path, serve, monkeypatch):
    """The hook really is a hole: without the sandbox it reads the secret."""
    share, _ = tree
    server = _broken_server(serve, tmp_path, share, "off", monkeypatch)
    client = Raw(server.address, "s", None)
    try:
        assert client.call("Lookup", pb.NameRequest(parent=1, name=ESCAPE)).errno == 0
    finally:
        client.close()
    assert "sandbox off" in server.log() and "broken on purpose" in server.log()


def test_sandbox_keeps_a_broken_confinement_inside_the_shares(
    tree, tmp_path, serve, landlock, monkeypatch
):
    share, outside = tree
    server = _broken_server(serve, tmp_path, share, "required", monkeypatch)
    assert f"sandbox on (Landlock ABI {landlock})" in server.log()
    client = Raw(server.address, "s", None)
    ro = Raw(server.address, "ro", None)
    try:
        for name in (ESCAPE, b"../" * 40 + b"etc/shadow", b"../outside/../outside/secret"):
            assert (
                client.call("Lookup", pb.NameRequest(parent=1, name=name)).errno == errno.EACCES
            ), name
        # Inside the share the hook reads as the naive server would: the sandbox allows it.
        assert client.call("Lookup", pb.NameRequest(parent=1, name=b"./file")).errno == 0
        # And everything the share allows still works.
        assert client.read_file(b"file") == b"inside\n"
        made = client.call(
            "Create", pb.CreateRequest(parent=1, name=b"new", mode=0o644, flags=os.O_WRONLY)
        )
        assert made.errno == 0
        assert client.call("Write", pb.WriteRequest(fh=made.fh, offset=0, data=b"x")).errno == 0
        client.call("Release", pb.FileRequest(fh=made.fh))
        assert client.call("MkDir", pb.MkDirRequest(parent=1, name=b"d", mode=0o755)).errno == 0
        d = client.call("Lookup", pb.NameRequest(parent=1, name=b"d")).entry.handle
        assert (
            client.call(
                "Rename", pb.RenameRequest(parent=1, name=b"new", new_parent=d, new_name=b"moved")
            ).errno
            == 0
        )
        assert (share / "d" / "moved").read_bytes() == b"x"
        assert ro.read_file(b"file") == b"inside\n"
        assert (
            ro.call("MkDir", pb.MkDirRequest(parent=1, name=b"e", mode=0o755)).errno == errno.EROFS
        )
    finally:
        client.close()
        ro.close()
    assert (outside / "secret").read_bytes() == b"secret\n"


def test_the_sandbox_in_a_child_process(tree, landlock):
    """restrict() itself: after it, the process reads its share, not a file beside it, and
    cannot write to a read-only share."""
    share, outside = tree
    ro = share.parent / "ro"
    ro.mkdir()
    (ro / "f").write_bytes(b"ro\n")
    script = textwrap.dedent(f"""
        import os, sys
        from bridgefs.server import sandbox
        sandbox.restrict([{str(share)!r}], [{str(ro)!r}])
        def attempt(f):
            try:
                f()
                return "ok"
            except PermissionError:
                return "EACCES"
        print(attempt(lambda: open({str(share / "file")!r}).read()))
        print(attempt(lambda: open({str(share / "../outside/secret")!r}).read()))
        print(attempt(lambda: open({str(outside / "secret")!r}).read()))
        print(attempt(lambda: open({str(ro / "f")!r}).read()))
        print(attempt(lambda: open({str(ro / "f")!r}, "a").write("x")))
        print(attempt(lambda: open({str(share / "w")!r}, "w").write("x")))
        print(attempt(lambda: open("/etc/shadow").read()))
        import json, decimal  # imports still work (the runtime is allowed)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "EACCES", "EACCES", "ok", "EACCES", "ok", "EACCES"]


def test_without_landlock_required_refuses_and_auto_says_so(tree, monkeypatch, caplog):
    """A kernel without Landlock, as the syscall answers it there (ENOSYS)."""
    share, _ = tree

    def missing() -> int:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(sandbox, "abi_version", missing)
    with pytest.raises(OSError) as info:
        sandbox.apply("required", [str(share)], [])
    assert "--sandbox required" in str(info.value)
    with caplog.at_level("WARNING", logger="bridgefs.server"):
        assert sandbox.apply("auto", [str(share)], []) is False
    assert "sandbox off: the kernel has no Landlock" in caplog.text
    proc = run_cli(
        [
            "serve",
            "--share",
            f"s={share}",
            "--listen",
            "unix:/nonexistent/x.sock",
            "--sandbox",
            "sometimes",
        ]
    )
    assert proc.returncode == 2 and "--sandbox" in proc.stderr
