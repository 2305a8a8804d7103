"""A ':ro' share refuses every mutation with EROFS, logs it, and nothing on disk changes."""

import errno
import logging
import os
import stat

from bridgefs.server.shares import parse_share_spec
from serverkit import snapshot


def test_every_mutation_is_refused(tree, raw, caplog):
    share, _ = tree
    os.symlink("file", share / "link")
    os.setxattr(share / "file", "user.keep", b"1")
    before = snapshot(share)
    client = raw("ro")
    assert client.hello.read_only
    file_h = client.handle(1, b"file")
    dir_h = client.handle(1, b"dir")
    link_h = client.handle(1, b"link")
    fh = client.Open(handle=file_h, flags=os.O_RDONLY).fh
    assert fh
    mutations = [
        (client.MkNod, dict(parent=1, name=b"n", mode=stat.S_IFIFO | 0o644)),
        (client.MkDir, dict(parent=1, name=b"n", mode=0o755)),
        (client.Symlink, dict(parent=1, name=b"n", target=b"file")),
        (client.Link, dict(handle=file_h, new_parent=1, new_name=b"n")),
        (client.Unlink, dict(parent=1, name=b"file")),
        (client.Unlink, dict(parent=1, name=b"missing")),
        (client.RmDir, dict(parent=1, name=b"dir")),
        (client.Rename, dict(parent=1, name=b"file", new_parent=dir_h, new_name=b"moved")),
        (client.Rename, dict(parent=1, name=b"file", new_parent=1, new_name=b"dir", flags=2)),
        (client.SetAttr, dict(handle=file_h, mode=0o600)),
        (client.SetAttr, dict(handle=file_h, uid=1, gid=1)),
        (client.SetAttr, dict(handle=file_h, size=0)),
        (client.SetAttr, dict(handle=file_h, fh=fh, size=0)),
        (client.SetAttr, dict(handle=file_h, mtime_now=True, atime_now=True)),
        (client.SetAttr, dict(handle=link_h, mtime_ns=1)),
        (client.SetXattr, dict(handle=file_h, name=b"user.new", value=b"v")),
        (client.RemoveXattr, dict(handle=file_h, name=b"user.keep")),
        (client.Open, dict(handle=file_h, flags=os.O_WRONLY)),
        (client.Open, dict(handle=file_h, flags=os.O_RDWR)),
        (client.Open, dict(handle=file_h, flags=os.O_RDONLY | os.O_TRUNC)),
        (client.Create, dict(parent=1, name=b"new", mode=0o644, flags=os.O_WRONLY)),
        (client.Create, dict(parent=1, name=b"file", mode=0o644, flags=os.O_RDONLY)),
        (client.Write, dict(handle=file_h, fh=fh, offset=0, data=b"X")),
        (client.Fallocate, dict(handle=file_h, fh=fh, offset=0, length=1 << 20)),
        (
            client.CopyFileRange,
            dict(
                handle_in=file_h, fh_in=fh, handle_out=file_h, fh_out=fh, offset_out=100, length=5
            ),
        ),
        (client.Access, dict(handle=file_h, mask=os.W_OK)),
        # the same by node, as a client in no-open mode addresses them (fh 0)
        (client.Write, dict(handle=file_h, offset=0, data=b"X")),
        (client.Fallocate, dict(handle=file_h, offset=0, length=1 << 20)),
        (client.CopyFileRange, dict(handle_in=file_h, handle_out=file_h, offset_out=100, length=5)),
    ]
    with caplog.at_level(logging.WARNING, logger="bridgefs.server"):
        for call, kwargs in mutations:
            assert call(**kwargs).errno == errno.EROFS, (call, kwargs)
    refusals = [r for r in caplog.records if "read-only share" in r.message]
    assert len(refusals) == len(mutations) - 1  # access(W_OK) answers EROFS without a refusal
    assert snapshot(share) == before
    assert os.getxattr(share / "file", "user.keep") == b"1"


def test_reads_still_work(tree, raw):
    client = raw("ro")
    file_h = client.handle(1, b"file")
    fh = client.Open(handle=file_h, flags=os.O_RDONLY).fh
    assert client.Read(handle=file_h, fh=fh, offset=0, size=100).data == b"inside\n"
    assert client.Fsync(handle=file_h, fh=fh).errno == 0
    assert client.Flush(handle=file_h, fh=fh).errno == 0
    assert client.Release(handle=file_h, fh=fh).errno == 0
    dh = client.OpenDir(handle=1).fh
    names = {e.name for e in client.ReadDir(handle=1, fh=dh, plus=True).entries}
    assert names == {b".", b"..", b"file", b"dir"}
    assert {e.name for e in client.ListDir(handle=1, plus=True).entries} == names
    assert client.Read(handle=file_h, offset=0, size=100).data == b"inside\n"
    assert client.Fsync(handle=file_h).errno == 0
    assert client.Access(handle=file_h, mask=os.R_OK).errno == 0
    assert client.StatFs(handle=1).errno == 0


def test_share_spec_parsing():
    assert parse_share_spec("docs=/srv/docs:ro") == ("docs", "/srv/docs", True)
    assert parse_share_spec("docs=/srv/docs") == ("docs", "/srv/docs", False)
    assert parse_share_spec("d=/a:b:rw") == ("d", "/a:b", False)
    for bad in ("nopath", "=/x", "a=", "a b=/x", "../x=/y", "a=:ro"):
        try:
            parse_share_spec(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
