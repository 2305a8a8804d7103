"""Failures come back as the host's own errno, in the reply's errno field."""

import contextlib
import errno
import os
import shutil
import stat

import grpc
import pytest

from bridgefs.rpc import CAPABILITIES, PROTOCOL_VERSION, pb, pb_grpc
from mounting import bridgefs_server
from serverkit import Raw


def test_handshake(raw, tree):
    client = raw()
    hello = client.hello
    assert hello.errno == 0 and hello.protocol_version == PROTOCOL_VERSION
    assert set(hello.capabilities) == set(CAPABILITIES)
    assert hello.root.handle == 1
    st = os.stat(tree[0])
    assert (hello.root.attr.ino, hello.root.attr.mode) == (st.st_ino, st.st_mode)
    assert hello.max_io_size == 1 << 20
    assert not hello.read_only


@pytest.mark.parametrize(
    "fields, err",
    [
        (dict(protocol_version=PROTOCOL_VERSION + 1, share="s"), errno.EPROTONOSUPPORT),
        (dict(protocol_version=0, share="s"), errno.EPROTONOSUPPORT),
        (dict(protocol_version=PROTOCOL_VERSION, share="nope"), errno.ENOENT),
        (
            dict(protocol_version=PROTOCOL_VERSION, share="s", required_capabilities=["teleport"]),
            errno.EPROTONOSUPPORT,
        ),
    ],
)
def test_handshake_refusals(server, fields, err):
    with grpc.insecure_channel(server.addresses[0]) as channel:
        reply = pb_grpc.FilesStub(channel).Handshake(pb.HandshakeRequest(**fields), timeout=10)
    assert reply.errno == err
    assert reply.protocol_version == PROTOCOL_VERSION and not reply.session


def test_host_errnos_pass_through(tree, raw):
    share, _ = tree
    client = raw()
    dir_h = client.handle(1, b"dir")
    file_h = client.handle(1, b"file")
    assert client.Lookup(parent=1, name=b"missing").errno == errno.ENOENT
    assert client.MkDir(parent=1, name=b"dir", mode=0o755).errno == errno.EEXIST
    assert client.RmDir(parent=1, name=b"dir").errno == errno.ENOTEMPTY
    assert client.RmDir(parent=1, name=b"file").errno == errno.ENOTDIR
    assert client.Unlink(parent=1, name=b"dir").errno == errno.EISDIR
    assert (
        client.Rename(parent=1, name=b"file", new_parent=1, new_name=b"dir", flags=1).errno
        == errno.EEXIST
    )  # RENAME_NOREPLACE
    assert (
        client.Rename(parent=1, name=b"missing", new_parent=1, new_name=b"x").errno == errno.ENOENT
    )
    assert (
        client.Rename(parent=1, name=b"file", new_parent=1, new_name=b"x", flags=0x100).errno
        == errno.EINVAL
    )
    assert (
        client.Rename(parent=1, name=b"dir", new_parent=dir_h, new_name=b"inside").errno
        == errno.EINVAL
    )  # a directory into itself
    assert client.Link(handle=dir_h, new_parent=1, new_name=b"dirlink").errno == errno.EPERM
    assert client.ReadLink(handle=file_h).errno == errno.ENOENT  # readlinkat(fd, "") on a file
    assert client.GetXattr(handle=file_h, name=b"user.none").errno == errno.ENODATA
    assert client.GetXattr(handle=file_h, name=b"").errno == errno.EINVAL
    assert (
        client.SetXattr(handle=file_h, name=b"user.a", value=b"1", flags=2).errno == errno.ENODATA
    )  # XATTR_REPLACE of a missing attribute
    assert client.SetXattr(handle=file_h, name=b"user.a", value=b"1", flags=1).errno == 0
    assert client.SetXattr(handle=file_h, name=b"user.a", value=b"1", flags=1).errno == errno.EEXIST
    assert client.Symlink(parent=1, name=b"l", target=b"").errno in (errno.EINVAL, errno.ENOENT)
    assert client.MkNod(parent=1, name=b"n", mode=stat.S_IFIFO | 0o644).errno == 0
    assert client.MkNod(parent=1, name=b"n", mode=stat.S_IFIFO | 0o644).errno == errno.EEXIST
    fh = client.Open(handle=file_h, flags=os.O_RDONLY).fh
    assert client.Write(handle=file_h, fh=fh, offset=0, data=b"x").errno == errno.EBADF
    assert client.Read(handle=file_h, fh=fh, offset=0, size=(1 << 20) + 1).errno == errno.EINVAL
    assert client.Lseek(handle=file_h, fh=fh, offset=100, whence=3).errno == errno.ENXIO
    assert (
        client.CopyFileRange(
            handle_in=file_h, fh_in=fh, handle_out=file_h, fh_out=fh, length=1, flags=1
        ).errno
        == errno.EINVAL
    )
    assert client.Release(handle=file_h, fh=fh).errno == 0
    assert client.Release(handle=file_h, fh=fh).errno == errno.EBADF


@contextlib.contextmanager
def _refused_by_permission_bits(share):
    """The address of a server on ``share`` that permission bits refuse.  As root (where tests
    run in CI) a server of its own without the capabilities that override them: the server
    obeys whatever the host's kernel says to whoever runs it."""
    listen = f"unix:{share.parent / 'unprivileged.sock'}"
    wrap = None
    if os.geteuid() == 0:
        wrap = [
            shutil.which("setpriv") or pytest.fail("setpriv is missing: install util-linux"),
            "--bounding-set",
            "-dac_override,-dac_read_search",
        ]
    with bridgefs_server({"s": str(share)}, listen, wrap=wrap) as (address, _):
        yield address


def test_permission_errors_are_the_hosts(tree):
    share, _ = tree
    (share / "locked").write_bytes(b"x")
    os.chmod(share / "locked", 0)
    with _refused_by_permission_bits(share) as address:
        client = Raw(address, "s")
        try:
            h = client.handle(1, b"locked")
            assert client.Open(handle=h, flags=os.O_RDONLY).errno == errno.EACCES
            readable = client.handle(1, b"file")  # the bits allow it: only they decide
            assert client.Open(handle=readable, flags=os.O_RDONLY).errno == 0
        finally:
            client.close()
