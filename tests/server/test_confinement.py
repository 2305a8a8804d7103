"""A client can name nothing outside its share, follow no symlink and open no special file."""

import errno
import logging
import os
import socket
import stat

import pytest

from serverkit import Inotify, fds_pointing_at, snapshot

BAD_NAMES = [
    (b"..", errno.EINVAL),
    (b".", errno.EINVAL),
    (b"a/b", errno.EINVAL),
    (b"/etc", errno.EINVAL),
    (b"", errno.EINVAL),
    (b"\0", errno.EINVAL),
    (b"a\0b", errno.EINVAL),
    (b"x" * 256, errno.ENAMETOOLONG),
    (b"x" * 4096, errno.ENAMETOOLONG),
]


@pytest.fixture
def links(tree):
    share, outside = tree
    os.symlink("/etc/passwd", share / "passwd")
    os.symlink(outside / "secret", share / "secret")
    os.symlink(outside, share / "escape")
    return share, outside


def test_symlink_to_etc_passwd_is_only_text(links, raw, caplog):
    client = raw()
    reply = client.Lookup(parent=1, name=b"passwd")
    assert reply.errno == 0
    handle = reply.entry.handle
    assert stat.S_ISLNK(reply.entry.attr.mode)
    assert reply.entry.attr.ino == os.lstat(links[0] / "passwd").st_ino
    assert client.ReadLink(handle=handle).target == b"/etc/passwd"
    with caplog.at_level(logging.WARNING, logger="bridgefs.server"):
        for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR | os.O_TRUNC):
            assert client.Open(handle=handle, flags=flags).errno == errno.ELOOP
    assert sum("open of a symlink node" in r.message for r in caplog.records) == 3
    assert client.OpenDir(handle=handle).errno == errno.ELOOP
    assert client.Lookup(parent=handle, name=b"x").errno == errno.ENOTDIR
    assert not fds_pointing_at("/etc/passwd")


def test_symlinks_to_outside_never_reach_the_target(links, raw):
    share, outside = links
    before = snapshot(outside)
    watch = Inotify(outside)
    client = raw()
    secret = client.handle(1, b"secret")
    escape = client.handle(1, b"escape")
    assert client.ReadLink(handle=escape).target == os.fsencode(outside)
    # Opening, truncating, chmod, chown, utimes and xattrs act on the link or are refused.
    assert client.Open(handle=secret, flags=os.O_RDWR | os.O_TRUNC).errno == errno.ELOOP
    assert client.SetAttr(handle=secret, size=0).errno == errno.ELOOP
    assert client.SetAttr(handle=secret, mode=0o777).errno == errno.EOPNOTSUPP
    assert client.SetAttr(handle=secret, uid=0, gid=0).errno == 0
    assert client.SetAttr(handle=secret, mtime_ns=10**9).errno == 0
    assert os.lstat(share / "secret").st_mtime_ns == 10**9
    assert client.SetXattr(handle=secret, name=b"user.x", value=b"1").errno == errno.EPERM
    # Create over the link's name must not open (or create, or truncate) the target.
    reply = client.Create(parent=1, name=b"secret", mode=0o644, flags=os.O_WRONLY | os.O_TRUNC)
    assert reply.errno == errno.ELOOP
    reply = client.Create(
        parent=1, name=b"secret", mode=0o644, flags=os.O_WRONLY | os.O_CREAT | os.O_EXCL
    )
    assert reply.errno == errno.EEXIST
    # A symlink to a directory is not a directory to name things in.
    for call, kwargs in [
        (client.Lookup, dict(name=b"secret")),
        (client.Create, dict(name=b"new", mode=0o644, flags=os.O_WRONLY)),
        (client.MkDir, dict(name=b"new", mode=0o755)),
        (client.Symlink, dict(name=b"new", target=b"x")),
        (client.MkNod, dict(name=b"new", mode=stat.S_IFIFO | 0o644)),
        (client.Unlink, dict(name=b"secret")),
        (client.RmDir, dict(name=b"x")),
    ]:
        assert call(parent=escape, **kwargs).errno == errno.ENOTDIR, call
    assert (
        client.Rename(parent=escape, name=b"secret", new_parent=1, new_name=b"stolen").errno
        == errno.ENOTDIR
    )
    assert (
        client.Rename(parent=1, name=b"file", new_parent=escape, new_name=b"planted").errno
        == errno.ENOTDIR
    )
    file_handle = client.handle(1, b"file")
    assert (
        client.Link(handle=file_handle, new_parent=escape, new_name=b"planted").errno
        == errno.ENOTDIR
    )
    assert watch.events() == []  # before snapshot(), which itself opens everything
    assert snapshot(outside) == before
    assert not fds_pointing_at(outside / "secret")
    (outside / "secret").read_bytes()
    assert (Inotify.IN_OPEN, b"secret") in watch.events()  # the watch does see opens
    watch.close()


@pytest.mark.parametrize("name, err", BAD_NAMES)
def test_bad_names_are_refused_everywhere(tree, raw, caplog, name, err):
    share, outside = tree
    before = snapshot(share.parent)
    client = raw()
    file_handle = client.handle(1, b"file")
    calls = [
        (client.Lookup, dict(parent=1, name=name)),
        (client.Lookup, dict(parent=2, name=name)),
        (client.MkDir, dict(parent=1, name=name, mode=0o755)),
        (client.MkNod, dict(parent=1, name=name, mode=stat.S_IFIFO | 0o644)),
        (client.Symlink, dict(parent=1, name=name, target=b"/etc/passwd")),
        (client.Create, dict(parent=1, name=name, mode=0o644, flags=os.O_RDWR)),
        (client.Link, dict(handle=file_handle, new_parent=1, new_name=name)),
        (client.Unlink, dict(parent=1, name=name)),
        (client.RmDir, dict(parent=1, name=name)),
        (client.Rename, dict(parent=1, name=name, new_parent=1, new_name=b"renamed")),
        (client.Rename, dict(parent=1, name=b"file", new_parent=1, new_name=name)),
    ]
    with caplog.at_level(logging.WARNING, logger="bridgefs.server"):
        for call, kwargs in calls:
            assert call(**kwargs).errno == err, (call, kwargs)
    refused = [r for r in caplog.records if r.message.startswith("refused")]
    assert len(refused) == len(calls)
    assert snapshot(share.parent) == before


def test_longest_name_is_allowed(tree, raw):
    client = raw()
    name = b"n" * 255
    assert client.Lookup(parent=1, name=name).errno == errno.ENOENT
    assert client.MkDir(parent=1, name=name, mode=0o755).errno == 0
    assert (tree[0] / name.decode()).is_dir()


def test_forged_and_foreign_handles(tree, raw, caplog):
    caplog.set_level(logging.WARNING, logger="bridgefs.server")
    a, b = raw(), raw()
    nested = a.handle(a.handle(1, b"dir"), b"nested")
    fh = a.Open(handle=nested, flags=os.O_RDONLY).fh
    dir_fh = a.OpenDir(handle=1).fh
    assert a.Read(handle=nested, fh=fh, offset=0, size=100).data == b"nested\n"
    for handle in (0, 999, 2**63, 2**64 - 1):
        assert a.Lookup(parent=handle, name=b"file").errno == errno.ESTALE
        assert a.GetAttr(handle=handle).errno == errno.ESTALE
        assert a.Open(handle=handle, flags=os.O_RDONLY).errno == errno.ESTALE
    for bad_fh in (999, 2**64 - 1):
        assert a.Read(handle=nested, fh=bad_fh, offset=0, size=10).errno == errno.EBADF
    for bad_fh in (0, 999, 2**64 - 1):
        assert a.ReadDir(handle=1, fh=bad_fh).errno == errno.EBADF
    # fh 0 reads the node itself, opened for that read alone, and only a node of this session
    assert a.Read(handle=nested, fh=0, offset=0, size=10).data == b"nested\n"
    assert a.Read(handle=999, fh=0, offset=0, size=10).errno == errno.ESTALE
    # A file handle is not a directory handle, and the other way round.
    assert a.ReadDir(handle=nested, fh=fh).errno == errno.EBADF
    assert a.Read(handle=1, fh=dir_fh, offset=0, size=10).errno == errno.EBADF
    # Another session's handles mean nothing here: b has not been handed `nested`.
    assert b.GetAttr(handle=nested).errno == errno.ESTALE
    assert b.Read(handle=nested, fh=fh, offset=0, size=10).errno == errno.EBADF
    assert sum("was never issued" in r.message for r in caplog.records) >= 14


def test_stale_handles_after_forget(tree, raw, caplog):
    client = raw()
    first = client.handle(1, b"file")
    assert client.handle(1, b"file") == first  # one handle per inode, counted twice
    assert client.Forget(items=[{"handle": first, "count": 1}]).errno == 0
    assert client.GetAttr(handle=first).errno == 0  # one reference left
    assert client.Forget(items=[{"handle": first, "count": 1}]).errno == 0
    with caplog.at_level(logging.WARNING, logger="bridgefs.server"):
        assert client.GetAttr(handle=first).errno == errno.ESTALE
        assert client.Lookup(parent=first, name=b"x").errno == errno.ESTALE
    assert not caplog.records  # forgotten is not forged: no refusal is logged
    second = client.handle(1, b"file")
    assert second > first  # never reused within a session
    # Forgetting the root, an unknown handle, or too much, is harmless.
    assert (
        client.Forget(
            items=[
                {"handle": 1, "count": 5},
                {"handle": 4242, "count": 1},
                {"handle": second, "count": 99},
            ]
        ).errno
        == 0
    )
    assert client.GetAttr(handle=1).errno == 0
    assert client.GetAttr(handle=second).errno == errno.ESTALE


def test_missing_or_forged_session(tree, raw):
    from bridgefs.rpc import pb

    client = raw()
    assert client.stub.GetAttr(pb.GetAttrRequest(handle=1), timeout=10).errno == errno.ESTALE
    reply = client.stub.GetAttr(
        pb.GetAttrRequest(handle=1), timeout=10, metadata=(("bridgefs-session", "f" * 32),)
    )
    assert reply.errno == errno.ESTALE
    assert client.GetAttr(handle=1).errno == 0


@pytest.mark.timeout(30)
def test_special_files_are_never_opened(tree, raw, tmp_path):
    share, _ = tree
    os.mkfifo(share / "fifo")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(share / "sock"))
    os.mknod(share / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    client = raw()
    for name in (b"fifo", b"sock", b"null"):
        handle = client.handle(1, name)
        # A FIFO without a writer would block an open for ever: ENXIO comes back at once.
        for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR):
            assert client.Open(handle=handle, flags=flags).errno == errno.ENXIO, name
        assert client.SetAttr(handle=handle, size=0).errno == errno.ENXIO
        assert (
            client.Create(parent=1, name=name, mode=0o644, flags=os.O_WRONLY).errno == errno.ENXIO
        )
    # Creating special files is allowed; opening the new one is not.
    reply = client.MkNod(parent=1, name=b"fifo2", mode=stat.S_IFIFO | 0o600)
    assert reply.errno == 0 and stat.S_ISFIFO(reply.entry.attr.mode)
    assert client.Open(handle=reply.entry.handle, flags=os.O_RDONLY).errno == errno.ENXIO
    assert client.OpenDir(handle=reply.entry.handle).errno == errno.ENXIO
    sock.close()


def test_directories_are_not_files(tree, raw):
    client = raw()
    dir_handle = client.handle(1, b"dir")
    file_handle = client.handle(1, b"file")
    assert client.Open(handle=dir_handle, flags=os.O_RDONLY).errno == errno.EISDIR
    assert client.OpenDir(handle=file_handle).errno == errno.ENOTDIR
    assert client.Lookup(parent=file_handle, name=b"x").errno == errno.ENOTDIR


def test_a_moved_out_directory_stays_reachable_only_by_its_handle(tree, raw):
    """What the host user moves out of the share is theirs to move; names never resolve
    outside, but a handle names the inode it was given for (as with any fd)."""
    share, outside = tree
    client = raw()
    dir_handle = client.handle(1, b"dir")
    os.rename(share / "dir", outside / "moved")
    assert client.Lookup(parent=1, name=b"dir").errno == errno.ENOENT
    assert client.GetAttr(handle=dir_handle).errno == 0
