"""Read-only mounts: a read-only share (``--share NAME=PATH:ro``) and ``bridgefs mount
--read-only`` of a writable share.  Through either, every mutation fails with EROFS and the host
tree stays byte for byte, mode for mode and mtime/ctime for mtime/ctime what it was; reading
still works.

One server and both mounts serve the module; every test works in a fresh tree of its own inside
the share (built on the host), so the tests stay independent."""

from __future__ import annotations

import errno
import os
import stat
import uuid

import pytest

from mounting import bridgefs_server, remote_mount
from remotekit import poll, snapshot


@pytest.fixture(scope="module")
def ro_mounts(tmp_path_factory):
    """(host folder, {mode: mount point}) for both ways of being read-only."""
    base = tmp_path_factory.mktemp("readonly")
    host = base / "host"
    host.mkdir()
    with bridgefs_server({"ro": f"{host}:ro", "rw": str(host)}, f"unix:{base / 'server.sock'}") as (
        address,
        _server,
    ):
        with (
            remote_mount(address, "ro", base / "ro-share"),
            remote_mount(address, "rw", base / "ro-mount", "--read-only"),
        ):
            yield host, {"ro-share": base / "ro-share", "ro-mount": base / "ro-mount"}


@pytest.fixture(params=["ro-share", "ro-mount"])
def tree(request, ro_mounts):
    """(host tree, the same tree through the mount): a fresh tree of this test's own."""
    host, mounts = ro_mounts
    name = f"t-{uuid.uuid4().hex[:12]}"
    root = host / name
    root.mkdir()
    (root / "file").write_bytes(b"precious content\n" * 100)
    (root / "empty").write_bytes(b"")
    (root / "dir").mkdir()
    (root / "dir" / "inner").write_bytes(b"inner\n")
    (root / "emptydir").mkdir()
    os.symlink("file", root / "link")
    (root / "xattrs").write_bytes(b"x")
    os.setxattr(root / "xattrs", "user.key", b"value")
    os.chmod(root / "file", 0o644)
    for p in [root / "file", root / "dir" / "inner", root / "xattrs", root / "dir", root]:
        os.utime(p, ns=(1_600_000_000_111_111_111, 1_600_000_000_222_222_222))
    before = snapshot(root)
    view = mounts[request.param] / name

    def caught_up():  # the mount shows the tree as the host has it (host changes stream in)
        for rel, rec in before.items():
            st = os.lstat(view / rel)
            if (st.st_mode, st.st_size, st.st_mtime_ns) != (
                rec["mode"],
                rec["size"],
                rec["mtime_ns"],
            ):
                return False
        return True

    poll(caught_up, what="the mount shows the new tree")
    yield root, view
    assert snapshot(root) == before, "the host tree changed through a read-only mount"


def _fifo(m):
    os.mkfifo(m / "fifo")


def _open(path, flags):
    os.close(os.open(path, flags, 0o644))


MUTATIONS = {
    "create": lambda m: _open(m / "new", os.O_CREAT | os.O_WRONLY),
    "create-excl": lambda m: _open(m / "new", os.O_CREAT | os.O_EXCL | os.O_RDWR),
    "create-in-subdir": lambda m: _open(m / "dir" / "new", os.O_CREAT | os.O_WRONLY),
    "open-write": lambda m: _open(m / "file", os.O_WRONLY),
    "open-rdwr": lambda m: _open(m / "file", os.O_RDWR),
    "open-append": lambda m: _open(m / "file", os.O_WRONLY | os.O_APPEND),
    "open-trunc": lambda m: _open(m / "file", os.O_WRONLY | os.O_TRUNC),
    "truncate": lambda m: os.truncate(m / "file", 0),
    "truncate-grow": lambda m: os.truncate(m / "empty", 100),
    "unlink": lambda m: os.unlink(m / "file"),
    "unlink-symlink": lambda m: os.unlink(m / "link"),
    "mkdir": lambda m: os.mkdir(m / "newdir"),
    "rmdir": lambda m: os.rmdir(m / "emptydir"),
    "rename": lambda m: os.rename(m / "file", m / "renamed"),
    "rename-over": lambda m: os.rename(m / "empty", m / "file"),
    "rename-dir": lambda m: os.rename(m / "dir", m / "dir2"),
    "rename-into-subdir": lambda m: os.rename(m / "file", m / "dir" / "file"),
    "chmod": lambda m: os.chmod(m / "file", 0o600),
    "chmod-dir": lambda m: os.chmod(m / "dir", 0o700),
    "chown": lambda m: os.chown(m / "file", 1, 1),
    "utime": lambda m: os.utime(m / "file", ns=(1, 2)),
    "utime-now": lambda m: os.utime(m / "file"),
    "symlink": lambda m: os.symlink("file", m / "newlink"),
    "link": lambda m: os.link(m / "file", m / "hardlink"),
    "setxattr": lambda m: os.setxattr(m / "file", "user.new", b"v"),
    "setxattr-replace": lambda m: os.setxattr(m / "xattrs", "user.key", b"other"),
    "removexattr": lambda m: os.removexattr(m / "xattrs", "user.key"),
    "mkfifo": _fifo,
    "mknod-regular": lambda m: os.mknod(m / "node", stat.S_IFREG | 0o644),
    "mknod-chardev": lambda m: os.mknod(m / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3)),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutation_is_erofs(tree, mutation):
    _host, m = tree
    with pytest.raises(OSError) as info:
        MUTATIONS[mutation](m)
    assert info.value.errno == errno.EROFS, (
        f"{mutation}: {errno.errorcode.get(info.value.errno)} instead of EROFS"
    )


def test_reading_still_works(tree):
    host, m = tree
    assert (m / "file").read_bytes() == b"precious content\n" * 100
    assert sorted(os.listdir(m)) == sorted(os.listdir(host))
    assert os.readlink(m / "link") == "file"
    assert os.getxattr(m / "xattrs", "user.key") == b"value"
    assert "user.key" in os.listxattr(m / "xattrs")
    st = os.stat(m / "file")
    assert (st.st_mode, st.st_mtime_ns, st.st_size) == (
        os.stat(host / "file").st_mode,
        1_600_000_000_222_222_222,
        1700,
    )
    # A read-only open of each file works and so do seeks and preads.
    fd = os.open(m / "file", os.O_RDONLY)
    try:
        assert os.pread(fd, 7, 17) == b"preciou"
        assert os.lseek(fd, 0, os.SEEK_END) == 1700
    finally:
        os.close(fd)
    # A write on a read-only descriptor is EBADF as anywhere.
    fd = os.open(m / "file", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as info:
            os.write(fd, b"x")
        assert info.value.errno == errno.EBADF
    finally:
        os.close(fd)


def test_statvfs_reports_read_only_mount(ro_mounts):
    """The --read-only mount is read-only for the kernel too (ST_RDONLY); a read-only share is
    refused by the client instead, and its mount still answers statvfs."""
    _host, mounts = ro_mounts
    assert os.statvfs(mounts["ro-mount"]).f_flag & os.ST_RDONLY
    os.statvfs(mounts["ro-share"])


def test_host_changes_still_show_through_read_only_mounts(ro_mounts):
    host, mounts = ro_mounts
    name = f"h-{uuid.uuid4().hex[:12]}"
    (host / name).write_bytes(b"new on host")
    try:
        for mnt in mounts.values():
            poll(
                lambda mnt=mnt: (mnt / name).read_bytes() == b"new on host",
                what=f"{name} appears through {mnt}",
            )
    finally:
        os.unlink(host / name)
