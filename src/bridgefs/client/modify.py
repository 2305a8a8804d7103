"""A modification of a file on the mount that never makes it shorter: how a replay makes the
VM's kernel emit IN_MODIFY for a host change of a file's contents.

fallocate(2) emits IN_MODIFY.  Without FALLOC_FL_KEEP_SIZE the kernel raises its size of the file
to ``offset + length`` if that is more and never lowers it, under the inode's lock, so writes of
the VM's own that the host does not have yet (in flight, or dirty pages of the writeback cache)
keep their place.  A truncate to the size read a moment before cannot: a write landing between
the two is cut off, and the kernel drops its pages past the answer.  The replay gate answers the
FALLOCATE itself; it never reaches the host.

glibc's posix_fallocate is not used: where the call is refused it writes zeros instead.
"""

from __future__ import annotations

import ctypes
import errno
import os

FALLOC_FL_KEEP_SIZE = 0x01

_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def modify_in_place(fd: int, host_size: int) -> None:
    """IN_MODIFY on ``fd``, its size in the kernel raised to ``host_size`` if that is more."""
    try:
        if host_size > 0:
            fallocate(fd, 0, 0, host_size)
        else:
            fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 1)  # (a length of 0 is refused)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        os.ftruncate(fd, os.fstat(fd).st_size)  # a kernel without FUSE fallocate
