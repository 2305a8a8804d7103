"""A host filesystem that reports lost writes at close (NFS does; so may FUSE ones).

By default the client's kernel never opens or closes files on the server: the server keeps a
file it writes open and closes it once idle (server/writers.py), when nobody waits for the
answer.  A close that fails there must not be forgotten: the next write or fsync of the file
through the mount reports it.  The host here is a FUSE filesystem (memfs) whose FLUSH of a file
opened for writing fails with EIO once armed, and whose fsync succeeds, as an NFS client's
would once the close had consumed the error.
"""

from __future__ import annotations

import errno
import os
import threading

import pytest
from waiting import wait_until

from bridgefs.fuse.filesystem import Context, FsError, Opened
from bridgefs.memfs import MemFS
from mounting import bridgefs_server, mounted, remote_mount
from remotekit import wait_events_flowing


class LosesAtClose(MemFS):
    def __init__(self) -> None:
        super().__init__()
        self.armed = threading.Event()
        self.failed = threading.Event()
        self._writing: set[int] = set()

    def open(self, ctx: Context, ino: int, flags: int) -> Opened:
        opened = super().open(ctx, ino, flags)
        if flags & os.O_ACCMODE != os.O_RDONLY:
            self._writing.add(opened.fh)
        return opened

    def create(self, ctx, parent, name, mode, umask, flags):
        entry, opened = super().create(ctx, parent, name, mode, umask, flags)
        self._writing.add(opened.fh)
        return entry, opened

    def flush(self, ctx: Context, ino: int, fh: int, lock_owner: int) -> None:
        super().flush(ctx, ino, fh, lock_owner)
        if self.armed.is_set() and fh in self._writing:
            self.failed.set()
            raise FsError(errno.EIO)


@pytest.fixture
def lossy_share(tmp_path):
    """(host filesystem, mount point): a default (events) mount of a LosesAtClose share."""
    host_fs = LosesAtClose()
    with mounted(host_fs, tmp_path / "host"):
        with bridgefs_server({"share": str(tmp_path / "host")}, f"unix:{tmp_path / 's.sock'}") as (
            address,
            _server,
        ):
            with remote_mount(address, "share", tmp_path / "mnt"):
                wait_events_flowing(tmp_path / "mnt")
                yield host_fs, tmp_path / "mnt"


@pytest.mark.parametrize("then", ["fsync", "write"])
def test_a_write_lost_at_the_hosts_close_is_reported(lossy_share, then):
    host_fs, mnt = lossy_share
    fd = os.open(mnt / "f", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        assert os.write(fd, b"data" * 1024) == 4096
        host_fs.armed.set()
        # The server closes the idle file by itself within a second or so.
        wait_until(host_fs.failed.is_set, what="the server's close of the idle file")
        with pytest.raises(OSError) as info:
            if then == "fsync":
                os.fsync(fd)
            else:
                os.pwrite(fd, b"more", 4096)
        assert info.value.errno == errno.EIO
        host_fs.armed.clear()
        os.fsync(fd)  # reported once
    finally:
        os.close(fd)
