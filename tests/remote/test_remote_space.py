"""A file deleted through the mount gives its space back to the host as soon as no process in
the guest holds it open; one still open stays readable and writable until it is closed.

The share is a 20 MiB tmpfs, so space the server still pins shows in statvfs and makes a second
15 MiB write fail with ENOSPC.  Each test runs in every way of mounting: the default (no-open
while events flow: the server opens files by node and keeps written ones open a while),
``--no-events`` (opens and releases reach the server) and ``--writeback-cache``."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from mounting import bridgefs_server, remote_mount, require_fuse
from remotekit import mount_status, poll, wait_events_flowing

SHARE_SIZE = 20 << 20
BIG = 15 << 20
CHUNK = 1 << 20

MODES = {"default": [], "no-events": ["--no-events"], "writeback-cache": ["--writeback-cache"]}


def used(host: pathlib.Path) -> int:
    st = os.statvfs(host)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def pinned(server_pid: int, host: pathlib.Path) -> list[str]:
    """The deleted files under ``host`` that the server process still holds a descriptor of."""
    out = []
    fd_dir = f"/proc/{server_pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith(str(host)) and target.endswith(" (deleted)"):
            out.append(target)
    return out


def write_big(path: pathlib.Path, byte: bytes = b"x") -> None:
    with open(path, "wb") as f:
        for _ in range(BIG // CHUNK):
            f.write(byte * CHUNK)


@pytest.fixture(params=sorted(MODES))
def tmpfs_share(request, tmp_path):
    """(host folder on a 20 MiB tmpfs, mount point, server process) for each mode."""
    require_fuse()
    host = tmp_path / "host"
    host.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SHARE_SIZE}", "tmpfs", str(host)], check=True
    )
    try:
        extra = MODES[request.param]
        mnt = tmp_path / "mnt"
        with bridgefs_server({"share": str(host)}, f"unix:{tmp_path / 'server.sock'}") as (
            address,
            server,
        ):
            with remote_mount(address, "share", mnt, *extra):
                if "--no-events" in extra:
                    assert mount_status(mnt)["events"] == "off"
                else:
                    wait_events_flowing(mnt)
                yield host, mnt, server
    finally:
        subprocess.run(["umount", "--lazy", str(host)], check=False)


def wait_freed(host: pathlib.Path, server_pid: int) -> None:
    try:
        poll(lambda: used(host) < CHUNK, what="the deleted file's space is free on the host")
    except pytest.fail.Exception as failed:
        pytest.fail(f"{failed}; the server holds {pinned(server_pid, host)}")
    assert pinned(server_pid, host) == []


def test_a_file_deleted_through_the_mount_frees_its_space(tmpfs_share):
    host, mnt, server = tmpfs_share
    write_big(mnt / "big")
    assert used(host) >= BIG
    (mnt / "big").unlink()
    wait_freed(host, server.pid)
    write_big(mnt / "again")  # the space is there to be used: no ENOSPC
    assert (host / "again").stat().st_size == BIG


def test_a_file_renamed_over_frees_the_old_one(tmpfs_share):
    host, mnt, server = tmpfs_share
    write_big(mnt / "old")
    (mnt / "small").write_bytes(b"replacement\n")
    os.rename(mnt / "small", mnt / "old")
    wait_freed(host, server.pid)
    assert (mnt / "old").read_bytes() == b"replacement\n"


def test_unlinked_while_open_is_kept_until_closed(tmpfs_share):
    host, mnt, server = tmpfs_share
    fd = os.open(mnt / "big", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for i in range(BIG // CHUNK):
            os.write(fd, bytes([i]) * CHUNK)
        (mnt / "big").unlink()
        assert not (mnt / "big").exists()
        # Still the program's file: read back from the server (not the page cache), and written.
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        for i in (0, 7, BIG // CHUNK - 1):
            assert os.pread(fd, CHUNK, i * CHUNK) == bytes([i]) * CHUNK
        os.pwrite(fd, b"still mine", 0)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert os.pread(fd, 10, 0) == b"still mine"
        assert used(host) >= BIG  # held by the open file
    finally:
        os.close(fd)
    wait_freed(host, server.pid)


def test_removing_one_of_two_links_keeps_the_other(tmpfs_share):
    host, mnt, server = tmpfs_share
    write_big(mnt / "a", b"a")
    os.link(mnt / "a", mnt / "b")
    (mnt / "a").unlink()
    with open(mnt / "b", "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        assert f.read(CHUNK) == b"a" * CHUNK
    with open(mnt / "b", "r+b") as f:
        f.seek(BIG - 1)
        f.write(b"b")
    assert (host / "b").stat().st_size == BIG
    assert used(host) >= BIG
    (mnt / "b").unlink()
    wait_freed(host, server.pid)


def test_a_file_deleted_on_the_host_is_not_pinned(tmpfs_share):
    host, mnt, server = tmpfs_share
    write_big(mnt / "big")
    with open(mnt / "big", "rb") as f:
        assert f.read(CHUNK) == b"x" * CHUNK
    os.unlink(host / "big")
    # With events the client has the kernel drop the name; without, the kernel drops it when it
    # next looks the name up (after the 1 s entry timeout): either way it then forgets the node.
    poll(lambda: not (mnt / "big").exists(), what="the mount sees the host's deletion")
    wait_freed(host, server.pid)
