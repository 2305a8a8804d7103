"""INIT: what bridgefs asks of the kernel, and what the two sides agree on."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from .abi import KERNEL_MINOR_VERSION, KERNEL_VERSION, InitFlag
from .filesystem import FsError
from .replies import InitOut

PAGE_SIZE = 4096
MAX_WRITE = 1 << 20
# The oldest protocol we serve: 7.31 brought max_pages, which the 1 MiB requests need.
MIN_MINOR = 31


@dataclass(frozen=True, slots=True)
class Tuning:
    """Choices made once per mount; the cache choices of each answer are the filesystem's."""

    max_write: int = MAX_WRITE
    max_readahead: int = MAX_WRITE
    max_background: int = 64
    congestion_threshold: int = 48
    writeback_cache: bool = False
    # Always answer listings with attributes: one READDIRPLUS fills the entry cache, saving a
    # LOOKUP per name.  READDIRPLUS_AUTO would let the kernel fall back to plain READDIR.
    readdirplus: bool = True
    auto_inval_data: bool = True
    atomic_o_trunc: bool = True

    def wanted(self) -> InitFlag:
        flags = (
            InitFlag.ASYNC_READ
            | InitFlag.BIG_WRITES
            | InitFlag.PARALLEL_DIROPS
            | InitFlag.MAX_PAGES
            | InitFlag.CACHE_SYMLINKS
            | InitFlag.ASYNC_DIO
            | InitFlag.HAS_IOCTL_DIR
            | InitFlag.NO_OPEN_SUPPORT
            | InitFlag.NO_OPENDIR_SUPPORT
        )
        if self.atomic_o_trunc:
            flags |= InitFlag.ATOMIC_O_TRUNC
        if self.readdirplus:
            flags |= InitFlag.DO_READDIRPLUS
        if self.writeback_cache:
            flags |= InitFlag.WRITEBACK_CACHE
        if self.auto_inval_data:
            flags |= InitFlag.AUTO_INVAL_DATA
        return flags


@dataclass(frozen=True, slots=True)
class Negotiated:
    minor: int
    flags: InitFlag
    max_write: int

    def has(self, flag: InitFlag) -> bool:
        return bool(self.flags & flag)


def negotiate(
    major: int, minor: int, kernel_flags: int, kernel_readahead: int, tuning: Tuning
) -> tuple[InitOut, Negotiated]:
    if major != KERNEL_VERSION:
        raise FsError(errno.EPROTO, f"kernel speaks FUSE {major}.{minor}, bridgefs speaks 7.x")
    if minor < MIN_MINOR:
        raise FsError(errno.EPROTO, f"kernel FUSE 7.{minor} is older than 7.{MIN_MINOR}")
    agreed_minor = min(minor, KERNEL_MINOR_VERSION)
    flags = InitFlag(tuning.wanted() & kernel_flags)
    max_write = (
        tuning.max_write if flags & InitFlag.MAX_PAGES else min(tuning.max_write, 32 * PAGE_SIZE)
    )
    out = InitOut(
        major=KERNEL_VERSION,
        minor=agreed_minor,
        max_readahead=min(tuning.max_readahead, kernel_readahead),
        flags=int(flags),
        max_background=tuning.max_background,
        congestion_threshold=tuning.congestion_threshold,
        max_write=max_write,
        time_gran=1,
        max_pages=max_write // PAGE_SIZE,
    )
    return out, Negotiated(agreed_minor, flags, max_write)
