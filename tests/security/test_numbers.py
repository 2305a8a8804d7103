"""Out-of-range numbers: every integer field of every request, at 2^63 and 2^64-1 (or the ends
of a narrower field's range), is answered with a proper errno, never EIO and never a traceback.

The fields are found from the contract itself, so a field added later is covered too.  Every
other field of the request names something real (an open file, the share root, a name), so that
the call gets as far as the number.
"""

from __future__ import annotations

import errno
import os

import pytest
from google.protobuf.descriptor import FieldDescriptor as F
from securitykit import Raw

from bridgefs.rpc import pb

RANGES = {
    F.TYPE_UINT64: (1 << 63, (1 << 64) - 1),
    F.TYPE_FIXED64: (1 << 63, (1 << 64) - 1),
    F.TYPE_INT64: ((1 << 63) - 1, -(1 << 63)),
    F.TYPE_SINT64: ((1 << 63) - 1, -(1 << 63)),
    F.TYPE_UINT32: (1 << 31, (1 << 32) - 1),
    F.TYPE_FIXED32: (1 << 31, (1 << 32) - 1),
    F.TYPE_INT32: ((1 << 31) - 1, -(1 << 31)),
    F.TYPE_SINT32: ((1 << 31) - 1, -(1 << 31)),
}
SKIP_METHODS = {"Handshake", "Watch", "Goodbye"}  # no share reached; Goodbye ends the session
PROPER = {
    0,
    errno.EINVAL,
    errno.EFBIG,
    errno.EOVERFLOW,
    errno.ENXIO,
    errno.ESTALE,
    errno.EBADF,
    errno.ENOENT,
    errno.EPERM,
    errno.EACCES,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENOSPC,
    errno.ENODATA,
    errno.ENOTSUP,
    errno.ERANGE,
    errno.E2BIG,
    errno.ENOTEMPTY,
    errno.EXDEV,
    errno.ENOSYS,
    errno.ENAMETOOLONG,
    errno.EROFS,
    errno.ESPIPE,
    errno.ENFILE,
    errno.EMFILE,
}


def _cases():
    service = pb.DESCRIPTOR.services_by_name["Files"]
    for method in service.methods:
        if method.name in SKIP_METHODS:
            continue
        for field in method.input_type.fields:
            if field.type in RANGES:
                for value in RANGES[field.type]:
                    yield method.name, method.input_type.name, field.name, value
            elif field.type == F.TYPE_MESSAGE:
                for sub in field.message_type.fields:
                    if sub.type in RANGES:
                        for value in RANGES[sub.type]:
                            name = f"{field.name}.{sub.name}"
                            yield method.name, method.input_type.name, name, value


CASES = list(_cases())


@pytest.fixture(scope="module")
def numbers_server(tmp_path_factory):
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from securitykit import ServeProcess

    base = tmp_path_factory.mktemp("numbers")
    share = base / "share"
    share.mkdir()
    (share / "file").write_bytes(b"inside\n" * 100)
    (share / "dir").mkdir()
    server = ServeProcess(
        ["--listen", f"unix:{base / 's.sock'}"], {"s": str(share)}, base / "serve.log"
    )
    yield server, share
    server.stop()


def _base(client: Raw, share) -> dict:
    """Field values that name something real."""
    name = b"n%d" % len(os.listdir(share))
    entry = client.call("Lookup", pb.NameRequest(parent=1, name=b"file")).entry.handle
    fh = client.call("Open", pb.OpenRequest(handle=entry, flags=os.O_RDWR)).fh
    dh = client.call("OpenDir", pb.NodeRequest(handle=1)).fh
    return dict(entry=entry, fh=fh, dh=dh, name=name)


def _request(cls, base: dict, field: str, value: int, method: str):
    desc = cls.DESCRIPTOR
    request = cls()
    for f in desc.fields:
        if f.name in ("handle", "handle_in", "handle_out"):
            setattr(
                request,
                f.name,
                1
                if method in ("OpenDir", "ReadDir", "ListDir", "ReleaseDir", "FsyncDir")
                else base["entry"],
            )
        elif f.name in ("parent", "new_parent"):
            setattr(request, f.name, 1)
        elif f.name in ("fh", "fh_in", "fh_out"):
            dirish = method in ("ReadDir", "ReleaseDir", "FsyncDir")
            setattr(request, f.name, base["dh"] if dirish else base["fh"])
        elif f.name in ("name", "new_name"):
            setattr(request, f.name, base["name"])
        elif f.name == "size" and method == "Read":
            request.size = 16
    if "." in field:
        outer, inner = field.split(".")
        holder = getattr(request, outer)
        if desc.fields_by_name[outer].is_repeated:
            holder = holder.add()
        if holder.DESCRIPTOR.fields_by_name[inner].is_repeated:
            getattr(holder, inner).append(value)
        else:
            setattr(holder, inner, value)
    elif desc.fields_by_name[field].is_repeated:
        getattr(request, field).append(value)
    else:
        setattr(request, field, value)
    return request


def test_every_number_field_at_the_ends_of_its_range(numbers_server):
    server, share = numbers_server
    client = Raw(server.address, "s", None)
    bad = []
    try:
        for method, type_name, field, value in CASES:
            if (
                method in ("Forget", "Release", "ReleaseDir")
                and "fh" not in field
                and "handle" not in field
                and "count" not in field
            ):
                continue
            base = _base(client, share)
            request = _request(getattr(pb, type_name), base, field, value, method)
            reply = client.call(method, request)
            if reply.errno not in PROPER:
                bad.append(f"{method}.{field}={value}: {errno.errorcode.get(reply.errno)}")
    finally:
        client.close()
    log = server.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:3000]
    assert not bad, "\n".join(bad)
    print(f"{len(CASES)} field values answered with proper errnos")
