"""The rules by which the server turns client-supplied names into host files.

* A name is one component: not empty, no ``/``, no NUL, not ``.`` or ``..`` (EINVAL), at most
  255 bytes (ENAMETOOLONG).  ``Name`` is a name that passed these checks: it cannot be made
  otherwise, and at.py, which holds every system call taking a name, takes nothing else.
* Names resolve with ``openat(parent_fd, name, O_PATH | O_NOFOLLOW)`` relative to an O_PATH fd the
  server already holds, so resolution never walks a path and never follows a symlink: a symlink
  becomes a node of its own whose target is only ever read as text.
* A node is reopened for I/O only through ``/proc/self/fd/N`` of its O_PATH fd and only after
  ``fstat`` shows a regular file or a directory.  The magic link names the inode the server already
  holds, so swapping a directory for a symlink between two calls cannot redirect the open.
* FIFOs, sockets and device nodes are never opened on the host: opening one is refused with
  ENXIO (as the kernel answers for a socket), so the host never blocks on a FIFO or touches a
  device on a guest's behalf.  Opening a symlink node is refused with ELOOP, as O_NOFOLLOW would.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import final

NAME_MAX = 255

# open(2) flags a client may pass through.  The server decides O_CREAT, O_EXCL, O_NOFOLLOW, O_PATH,
# O_TMPFILE, O_DIRECTORY, O_NOCTTY and O_NONBLOCK itself; O_DIRECT would need aligned buffers the
# server does not use, and O_NOATIME fails with EPERM on files the server's user does not own.
PASS_FLAGS = (
    os.O_ACCMODE | os.O_APPEND | os.O_TRUNC | os.O_SYNC | os.O_DSYNC | getattr(os, "O_LARGEFILE", 0)
)


class Refused(OSError):
    """A request the confinement rules turned down; the service logs each one."""

    def __init__(self, err: int, reason: str):
        super().__init__(err, f"{os.strerror(err)}: {reason}")
        self.reason = reason


@final
class Name(bytes):
    """One name component that obeys the rules above; constructing one checks it, so a Name
    that breaks them cannot exist.  Slicing or joining gives plain bytes, never a Name."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        # A subclass could construct itself without the checks.
        raise TypeError("Name cannot be subclassed")

    def __new__(cls, name: bytes) -> Name:
        if not isinstance(name, bytes):
            raise Refused(errno.EINVAL, "name is not bytes")
        if not name:
            raise Refused(errno.EINVAL, "empty name")
        if b"/" in name or b"\0" in name:
            raise Refused(errno.EINVAL, f"name with '/' or NUL: {name[:64]!r}")
        if name in (b".", b".."):
            raise Refused(errno.EINVAL, f"dot name {name!r}")
        if len(name) > NAME_MAX:
            raise Refused(errno.ENAMETOOLONG, f"name of {len(name)} bytes")
        return super().__new__(cls, name)


def check_name(name: bytes) -> Name:
    """``name`` as a Name, or Refused (an OSError) saying which rule it breaks."""
    return name if isinstance(name, Name) else Name(name)


def proc_path(fd: int) -> str:
    """The magic link naming exactly the inode behind ``fd``.

    For operations on the inode that never open it for I/O (chmod, xattrs, link, access); I/O
    goes through ``reopen``."""
    return f"/proc/self/fd/{fd}"


def node_of(fd: int) -> int:
    """An O_PATH fd for the same inode as the open ``fd`` (after create)."""
    return os.open(proc_path(fd), os.O_PATH | os.O_CLOEXEC)


def _check_openable(st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise Refused(errno.ELOOP, "open of a symlink node")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise Refused(errno.ENXIO, f"open of a special file (mode {st.st_mode:o})")


def reopen(node_fd: int, flags: int) -> int:
    """Open the regular file behind an O_PATH fd for I/O."""
    st = os.fstat(node_fd)
    _check_openable(st)
    if stat.S_ISDIR(st.st_mode):
        raise OSError(errno.EISDIR, "is a directory")
    return os.open(proc_path(node_fd), (flags & PASS_FLAGS) | os.O_CLOEXEC)


def reopen_dir(node_fd: int) -> int:
    """Open the directory behind an O_PATH fd for listing or fsync."""
    st = os.fstat(node_fd)
    _check_openable(st)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, "not a directory")
    return os.open(proc_path(node_fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
