"""Linux system calls the os module lacks, through ctypes, raising OSError like os does.

Each exists because the os module cannot express it: renameat2 flags, fallocate modes, and the
AT_EMPTY_PATH forms that act on an O_PATH descriptor itself (so a symlink node is changed, never
the file it points to).
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_WHITEOUT = 4
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

_SYS_RENAMEAT2 = 316  # x86_64; only used if libc lacks the wrapper (glibc < 2.28)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _check(result: int, what: str) -> None:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _setup() -> None:
    _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _libc.fallocate.restype = ctypes.c_int
    _libc.fchownat.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint32,
        ctypes.c_uint32,
        ctypes.c_int,
    ]
    _libc.fchownat.restype = ctypes.c_int
    _libc.utimensat.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.POINTER(_Timespec),
        ctypes.c_int,
    ]
    _libc.utimensat.restype = ctypes.c_int
    _libc.syncfs.argtypes = [ctypes.c_int]
    _libc.syncfs.restype = ctypes.c_int


_setup()


def renameat2(olddirfd: int, oldname: bytes, newdirfd: int, newname: bytes, flags: int) -> None:
    """Takes names as they come: the server reaches it only through at.rename, which takes
    checked names alone (tests/server/test_names.py holds every other module to that)."""
    fn = getattr(_libc, "renameat2", None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        result = fn(olddirfd, oldname, newdirfd, newname, flags)
    else:
        result = _libc.syscall(
            _SYS_RENAMEAT2,
            ctypes.c_int(olddirfd),
            ctypes.c_char_p(oldname),
            ctypes.c_int(newdirfd),
            ctypes.c_char_p(newname),
            ctypes.c_uint(flags),
        )
    _check(result, "renameat2")


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    _check(_libc.fallocate(fd, mode, offset, length), "fallocate")


def fchown_node(fd: int, uid: int, gid: int) -> None:
    """chown the node an O_PATH fd names (a symlink itself, not its target); -1 keeps a field."""
    _check(
        _libc.fchownat(
            fd, b"", uid & 0xFFFFFFFF, gid & 0xFFFFFFFF, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW
        ),
        "fchownat",
    )


def utimens_node(
    fd: int,
    atime_ns: int | None,
    mtime_ns: int | None,
    *,
    atime_now: bool = False,
    mtime_now: bool = False,
) -> None:
    """Set the times of the node an O_PATH fd names, never following a symlink.

    None leaves a time unchanged (UTIME_OMIT); ``*_now`` sets it to the current time."""

    def spec(ns: int | None, now: bool) -> _Timespec:
        if now:
            return _Timespec(0, UTIME_NOW)
        if ns is None:
            return _Timespec(0, UTIME_OMIT)
        sec, nsec = divmod(ns, 1_000_000_000)
        return _Timespec(sec, nsec)

    times = (_Timespec * 2)(spec(atime_ns, atime_now), spec(mtime_ns, mtime_now))
    _check(_libc.utimensat(fd, b"", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW), "utimensat")


def syncfs(fd: int) -> None:
    _check(_libc.syncfs(fd), "syncfs")
