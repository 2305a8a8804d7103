"""``bridgefs mount --uid U --gid G`` presents every file as owned by U:G, whatever owns it on
the host; without them, host ownership passes through."""

from __future__ import annotations

import os

import pytest

from mounting import bridgefs_server, remote_mount
from remotekit import poll

UID, GID = 1234, 5678


def _populate(host):
    (host / "root-file").write_bytes(b"r")
    (host / "dir" / "deeper").mkdir(parents=True)
    (host / "dir" / "deeper" / "leaf").write_bytes(b"leaf")
    os.symlink("../root-file", host / "dir" / "link")
    os.mkfifo(host / "fifo")
    (host / "other-owner").write_bytes(b"o")
    os.chown(host / "other-owner", 4242, 4343)
    os.lchown(host / "dir" / "link", 777, 888)


def _all_paths(root):
    paths = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        paths += [os.path.join(dirpath, n) for n in dirnames + filenames]
    return paths


@pytest.fixture
def presented(tmp_path, host_dir):
    _populate(host_dir)
    mnt = tmp_path / "mnt"
    with bridgefs_server({"share": str(host_dir)}, f"unix:{tmp_path / 'server.sock'}") as (
        address,
        _server,
    ):
        with remote_mount(address, "share", mnt, "--uid", str(UID), "--gid", str(GID)):
            yield host_dir, mnt


def test_every_file_is_presented_as_owned_by_uid_gid(presented):
    host, mnt = presented
    paths = _all_paths(mnt)
    assert len(paths) == len(_all_paths(host)) == 8
    owners = {os.path.relpath(p, mnt): (os.lstat(p).st_uid, os.lstat(p).st_gid) for p in paths}
    assert owners == {rel: (UID, GID) for rel in owners}
    # The same through stat() that follows links, fstat() of open files and readdir-plus.
    followed = os.stat(mnt / "dir" / "link")
    assert (followed.st_uid, followed.st_gid) == (UID, GID)
    with open(mnt / "other-owner", "rb") as f:
        st = os.fstat(f.fileno())
        assert (st.st_uid, st.st_gid) == (UID, GID)
    for entry in os.scandir(mnt):
        st = entry.stat(follow_symlinks=False)
        assert (st.st_uid, st.st_gid) == (UID, GID), entry.name
    # The host keeps its real owners.
    assert (os.lstat(host / "other-owner").st_uid, os.lstat(host / "other-owner").st_gid) == (
        4242,
        4343,
    )
    assert os.lstat(host / "root-file").st_uid == os.getuid()


def test_new_files_are_presented_as_owned_by_uid_gid(presented):
    host, mnt = presented
    (mnt / "new").write_bytes(b"n")
    os.mkdir(mnt / "newdir")
    os.symlink("new", mnt / "newlink")
    for name in ["new", "newdir", "newlink"]:
        st = os.lstat(mnt / name)
        assert (st.st_uid, st.st_gid) == (UID, GID), name
    # On the host they belong to whoever the server runs as (here root).
    assert os.lstat(host / "new").st_uid == os.getuid()
    # A file the host creates or hands over later is presented the same way.
    (host / "later").write_bytes(b"l")
    os.chown(host / "later", 99, 98)
    st = poll(lambda: os.lstat(mnt / "later"), what="the host's new file appears")
    assert (st.st_uid, st.st_gid) == (UID, GID)


def test_ownership_passes_through_without_uid_gid(share):
    host, mnt, _ = share
    _populate(host)  # while mounted: the mount learns of it as host changes

    def owners(root):
        return {
            os.path.relpath(p, root): (os.lstat(p).st_uid, os.lstat(p).st_gid)
            for p in _all_paths(root)
        }

    want = owners(host)
    assert want["other-owner"] == (4242, 4343) and want[os.path.join("dir", "link")] == (777, 888)
    poll(lambda: owners(mnt) == want, what="host ownership shows through the mount")
