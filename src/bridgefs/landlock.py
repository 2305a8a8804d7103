"""Landlock through ctypes: the three system calls (landlock_create_ruleset 444,
landlock_add_rule 445, landlock_restrict_self 446, the same on every architecture) and the two
structures they take.  The standard library has no binding, and this is all of it.

A ruleset restricts the thread that applies it and every thread it starts afterwards, never
threads already running, and cannot be lifted.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterable

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # same on every arch
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2: link and rename across directories
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5

FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # all a file's rule may hold


def _abi_rights(abi: int) -> int:
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


class _Libc:
    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long

    def syscall(self, number: int, *args: object) -> int:
        result = int(self.libc.syscall(ctypes.c_long(number), *args))
        if result < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return result

    def no_new_privs(self) -> None:
        if self.libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")


def abi_version() -> int:
    """The kernel's Landlock ABI version; OSError when Landlock is missing or disabled."""
    return _Libc().syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), CREATE_RULESET_VERSION)


def restrict(rules: Iterable[tuple[str, int]]) -> int:
    """Restrict this thread (and threads it starts) to ``(path, rights)`` rules: each allows
    ``rights`` beneath ``path`` (a path that does not exist is skipped), every other handled
    right is denied everywhere.  Returns the ABI; OSError if Landlock is unavailable."""
    c = _Libc()
    abi = abi_version()
    handled = _abi_rights(abi)
    ruleset_attr = struct.pack("QQQ", handled, 0, 0)[: 24 if abi >= 6 else 16 if abi >= 4 else 8]
    buf = ctypes.create_string_buffer(ruleset_attr, len(ruleset_attr))
    ruleset = c.syscall(SYS_CREATE_RULESET, buf, ctypes.c_size_t(len(ruleset_attr)), 0)
    try:
        for path, rights in rules:
            _add_rule(c, ruleset, path, rights & handled)
        c.no_new_privs()
        c.syscall(SYS_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)
    return abi


def all_rights() -> int:
    """Every filesystem right this kernel's Landlock knows."""
    return _abi_rights(abi_version())


def _add_rule(c: _Libc, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not on this system (/lib32, say): nothing to allow
    try:
        if not os.path.isdir(path):
            rights &= FILE_RIGHTS  # a file's rule may hold only these
        attr = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)  # packed
        c.syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, attr, 0)
    finally:
        os.close(fd)
