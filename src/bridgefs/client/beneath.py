"""Resolving a path strictly inside the mount, for the replay's system calls.

The replay acts on the mount as root.  A host-side change can turn a directory of the share into a
symlink to anywhere in the guest between the change and its replay, so the replay resolves every
directory on its path with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV) from a
descriptor of the mount root, and then acts on the last name with the *at() calls, which do not
follow a final symlink.
"""

from __future__ import annotations

import ctypes
import os
import struct

SYS_OPENAT2 = 437  # x86_64 and aarch64 alike
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_HOW = struct.Struct("QQQ")  # struct open_how {flags, mode, resolve}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def open_dir_beneath(root_fd: int, components: list[bytes]) -> int:
    """An O_PATH descriptor of the directory at ``components`` below ``root_fd``; OSError if any
    step is a symlink, leaves the mount, or is missing."""
    if not components:
        return os.dup(root_fd)
    path = b"/".join(components)
    how = _HOW.pack(
        os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
        0,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV,
    )
    buf = ctypes.create_string_buffer(how, len(how))
    fd: int = _libc.syscall(
        SYS_OPENAT2, root_fd, ctypes.c_char_p(path), buf, ctypes.c_size_t(len(how))
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(path))
    return fd
