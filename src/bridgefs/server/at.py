"""Every system call that resolves a name relative to a directory fd, for a ``Name`` only.

A client's name reaches the host only through here, and each function refuses anything but a
``confine.Name`` with TypeError (mypy refuses it before that), so an operation added to the server
cannot hand the host a name that skipped the checks: it has to get a Name from
``confine.check_name`` first.  tests/server/test_names.py checks that no other server module
passes ``dir_fd`` (or ``src_dir_fd``, ``dst_dir_fd``) to a system call, nor calls renameat2.

Nothing here follows a symlink in the name it is given: a symlink is a node of its own.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from bridgefs.server import confine, syscalls
from bridgefs.server.confine import Name

_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
RENAME_FLAGS = syscalls.RENAME_NOREPLACE | syscalls.RENAME_EXCHANGE | syscalls.RENAME_WHITEOUT


def _checked(name: Name) -> Name:
    # A runtime check as well as the annotation: callers are not all type-checked (tests, and
    # code reached through Any such as a request message's fields).
    if not isinstance(name, Name):
        raise TypeError(f"an unchecked name ({type(name).__name__}) reached a system call")
    return name


def lookup(dirfd: int, name: Name) -> int:
    """An O_PATH fd for ``name`` inside the directory ``dirfd``."""
    return os.open(_checked(name), _PATH_FLAGS, dir_fd=dirfd)


def create(dirfd: int, name: Name, flags: int, mode: int) -> tuple[int, bool]:
    """Create-or-open ``name`` as a regular file; returns (io_fd, created).

    O_CREAT without O_EXCL would open an existing FIFO or device (and follow nothing, but block
    on a FIFO), so the file is created with O_EXCL and an existing name goes through lookup and
    the same type check as any other open."""
    _checked(name)
    io_flags = (flags & confine.PASS_FLAGS) | os.O_CLOEXEC | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    for _ in range(8):
        try:
            fd = os.open(name, io_flags, mode, dir_fd=dirfd)
            return fd, True
        except FileExistsError:
            if flags & os.O_EXCL:
                raise
        try:
            node = lookup(dirfd, name)
        except FileNotFoundError:
            continue  # removed between the two calls: try creating again
        try:
            return confine.reopen(node, flags), False
        finally:
            os.close(node)
    raise OSError(errno.EAGAIN, "name keeps appearing and disappearing")


def stat(dirfd: int, name: Name) -> os.stat_result:
    return os.stat(_checked(name), dir_fd=dirfd, follow_symlinks=False)


def stat_below(dirfd: int, parts: Sequence[Name]) -> os.stat_result:
    """The node at ``parts`` below ``dirfd``, for a path the host reported itself (the watcher):
    every component is a Name, so the path never climbs out with ``..``; no parts is ``dirfd``."""
    if not parts:
        return os.fstat(dirfd)
    return os.stat(b"/".join(_checked(p) for p in parts), dir_fd=dirfd, follow_symlinks=False)


def stat_parent(dirfd: int) -> os.stat_result:
    """The directory holding ``dirfd``: the one ``..`` the server resolves, for listings."""
    return os.stat("..", dir_fd=dirfd, follow_symlinks=False)


def readlink_node(fd: int) -> bytes:
    """The target of the symlink an O_PATH fd names (the empty name means the fd itself)."""
    return os.readlink(b"", dir_fd=fd)


def mknod(dirfd: int, name: Name, mode: int, rdev: int) -> None:
    os.mknod(_checked(name), mode, rdev, dir_fd=dirfd)


def mkdir(dirfd: int, name: Name, mode: int) -> None:
    os.mkdir(_checked(name), mode, dir_fd=dirfd)


def symlink(target: bytes, dirfd: int, name: Name) -> None:
    """``target`` is stored as text and never resolved by the server."""
    os.symlink(target, _checked(name), dir_fd=dirfd)


def link(fd: int, dirfd: int, name: Name) -> None:
    """A new name for the inode behind ``fd``: linkat through its magic link links the very inode
    held, with no name re-resolved."""
    os.link(confine.proc_path(fd), _checked(name), dst_dir_fd=dirfd, follow_symlinks=True)


def unlink(dirfd: int, name: Name) -> None:
    os.unlink(_checked(name), dir_fd=dirfd)


def rmdir(dirfd: int, name: Name) -> None:
    os.rmdir(_checked(name), dir_fd=dirfd)


def rename(olddirfd: int, name: Name, newdirfd: int, new_name: Name, flags: int) -> None:
    _checked(name)
    _checked(new_name)
    if flags == 0:
        os.rename(name, new_name, src_dir_fd=olddirfd, dst_dir_fd=newdirfd)
    else:
        syscalls.renameat2(olddirfd, name, newdirfd, new_name, flags)
