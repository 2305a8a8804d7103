"""Replies to the kernel: typed values in, frames (lists of byte chunks) out.

Each reply type knows its payload layout (``pack``) and, for tests and tools, how to read it back
(``unpack``).  ``frame(unique, reply)`` and ``error_frame(unique, errno)`` build whole messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import abi
from .filesystem import Attr, AttrReply, Entry, Lock, Opened, StatFs


def split_timeout(seconds: float) -> tuple[int, int]:
    if seconds <= 0:
        return 0, 0
    whole = int(seconds)
    nsec = round((seconds - whole) * 1e9)
    return (whole + 1, 0) if nsec >= 10**9 else (whole, nsec)


def join_timeout(whole: int, nsec: int) -> float:
    return whole + nsec / 1e9


def attr_values(a: Attr) -> tuple[int, ...]:
    return (
        a.ino,
        a.size,
        a.blocks,
        a.atime_ns // 10**9,
        a.mtime_ns // 10**9,
        a.ctime_ns // 10**9,
        a.atime_ns % 10**9,
        a.mtime_ns % 10**9,
        a.ctime_ns % 10**9,
        a.mode,
        a.nlink,
        a.uid,
        a.gid,
        a.rdev,
        a.blksize,
        0,
    )


def attr_from_values(v: tuple[int, ...]) -> Attr:
    ino, size, blocks, at, mt, ct, atn, mtn, ctn, mode, nlink, uid, gid, rdev, blksize, _ = v
    return Attr(
        ino=ino,
        mode=mode,
        nlink=nlink,
        uid=uid,
        gid=gid,
        rdev=rdev,
        size=size,
        blocks=blocks,
        atime_ns=at * 10**9 + atn,
        mtime_ns=mt * 10**9 + mtn,
        ctime_ns=ct * 10**9 + ctn,
        blksize=blksize,
    )


_ZERO_ATTR = Attr(ino=0, mode=0, nlink=0)


def pack_entry(e: Entry) -> bytes:
    ev, evn = split_timeout(e.entry_timeout)
    av, avn = split_timeout(e.attr_timeout)
    return abi.ENTRY_OUT.pack(
        e.ino, e.generation, ev, av, evn, avn, *attr_values(e.attr or _ZERO_ATTR)
    )


def unpack_entry(data: bytes) -> Entry:
    v = abi.ENTRY_OUT.unpack_from(data)
    attr = attr_from_values(v[6:])
    return Entry(
        ino=v[0],
        attr=attr if v[0] else None,
        entry_timeout=join_timeout(v[2], v[4]),
        attr_timeout=join_timeout(v[3], v[5]),
        generation=v[1],
    )


def open_flags(o: Opened) -> int:
    return (
        (abi.FOPEN_KEEP_CACHE if o.keep_cache else 0)
        | (abi.FOPEN_CACHE_DIR if o.cache_dir else 0)
        | (abi.FOPEN_DIRECT_IO if o.direct_io else 0)
        | (abi.FOPEN_NONSEEKABLE if o.nonseekable else 0)
        | (abi.FOPEN_NOFLUSH if o.noflush else 0)
    )


def opened_from_flags(fh: int, flags: int) -> Opened:
    return Opened(
        fh=fh,
        keep_cache=bool(flags & abi.FOPEN_KEEP_CACHE),
        cache_dir=bool(flags & abi.FOPEN_CACHE_DIR),
        direct_io=bool(flags & abi.FOPEN_DIRECT_IO),
        nonseekable=bool(flags & abi.FOPEN_NONSEEKABLE),
        noflush=bool(flags & abi.FOPEN_NOFLUSH),
    )


class Reply:
    __slots__ = ()

    def pack(self) -> bytes | list[bytes]:
        raise NotImplementedError

    @classmethod
    def unpack(cls, payload: bytes) -> Reply:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Empty(Reply):
    def pack(self) -> bytes:
        return b""

    @classmethod
    def unpack(cls, payload: bytes) -> Empty:
        return cls()


@dataclass(frozen=True, slots=True)
class EntryOut(Reply):
    entry: Entry

    def pack(self) -> bytes:
        return pack_entry(self.entry)

    @classmethod
    def unpack(cls, payload: bytes) -> EntryOut:
        return cls(unpack_entry(payload))


@dataclass(frozen=True, slots=True)
class AttrOut(Reply):
    reply: AttrReply

    def pack(self) -> bytes:
        sec, nsec = split_timeout(self.reply.timeout)
        return abi.ATTR_OUT.pack(sec, nsec, 0, *attr_values(self.reply.attr))

    @classmethod
    def unpack(cls, payload: bytes) -> AttrOut:
        v = abi.ATTR_OUT.unpack_from(payload)
        return cls(AttrReply(attr_from_values(v[3:]), join_timeout(v[0], v[1])))


@dataclass(frozen=True, slots=True)
class OpenOut(Reply):
    opened: Opened

    def pack(self) -> bytes:
        return abi.OPEN_OUT.pack(self.opened.fh, open_flags(self.opened), 0)

    @classmethod
    def unpack(cls, payload: bytes) -> OpenOut:
        fh, flags, _ = abi.OPEN_OUT.unpack_from(payload)
        return cls(opened_from_flags(fh, flags))


@dataclass(frozen=True, slots=True)
class CreateOut(Reply):
    entry: Entry
    opened: Opened

    def pack(self) -> bytes:
        return pack_entry(self.entry) + OpenOut(self.opened).pack()

    @classmethod
    def unpack(cls, payload: bytes) -> CreateOut:
        return cls(unpack_entry(payload), OpenOut.unpack(payload[abi.ENTRY_OUT.size :]).opened)


@dataclass(frozen=True, slots=True)
class WriteOut(Reply):
    size: int

    def pack(self) -> bytes:
        return abi.WRITE_OUT.pack(self.size, 0)

    @classmethod
    def unpack(cls, payload: bytes) -> WriteOut:
        return cls(abi.WRITE_OUT.unpack_from(payload)[0])


@dataclass(frozen=True, slots=True)
class CopyOut(Reply):
    """COPY_FILE_RANGE_64: the byte count is 64 bits wide (WriteOut's is 32)."""

    size: int

    def pack(self) -> bytes:
        return abi.COPY_FILE_RANGE_OUT.pack(self.size)

    @classmethod
    def unpack(cls, payload: bytes) -> CopyOut:
        return cls(abi.COPY_FILE_RANGE_OUT.unpack_from(payload)[0])


@dataclass(frozen=True, slots=True)
class StatFsOut(Reply):
    st: StatFs

    def pack(self) -> bytes:
        s = self.st
        return abi.STATFS_OUT.pack(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize, 0
        )

    @classmethod
    def unpack(cls, payload: bytes) -> StatFsOut:
        b, bf, ba, f, ff, bs, nl, fr, _ = abi.STATFS_OUT.unpack_from(payload)
        return cls(StatFs(b, bf, ba, f, ff, bs, nl, fr))


@dataclass(frozen=True, slots=True)
class Data(Reply):
    """Raw bytes: read, readlink, getxattr/listxattr values, readdir buffers."""

    data: bytes

    def pack(self) -> bytes:
        return self.data

    @classmethod
    def unpack(cls, payload: bytes) -> Data:
        return cls(bytes(payload))


@dataclass(frozen=True, slots=True)
class DirData(Data):
    """A READDIRPLUS buffer, with the nodes it handed to the kernel (each counted once)."""

    counted: tuple[int, ...] = ()

    @classmethod
    def unpack(cls, payload: bytes) -> DirData:
        return cls(bytes(payload))


@dataclass(frozen=True, slots=True)
class XattrSize(Reply):
    size: int

    def pack(self) -> bytes:
        return abi.GETXATTR_OUT.pack(self.size, 0)

    @classmethod
    def unpack(cls, payload: bytes) -> XattrSize:
        return cls(abi.GETXATTR_OUT.unpack_from(payload)[0])


@dataclass(frozen=True, slots=True)
class LkOut(Reply):
    lock: Lock

    def pack(self) -> bytes:
        lk = self.lock
        return abi.LK_OUT.pack(lk.start, lk.end, lk.type, lk.pid)

    @classmethod
    def unpack(cls, payload: bytes) -> LkOut:
        return cls(Lock(*abi.LK_OUT.unpack_from(payload)))


@dataclass(frozen=True, slots=True)
class BmapOut(Reply):
    block: int

    def pack(self) -> bytes:
        return abi.BMAP_OUT.pack(self.block)

    @classmethod
    def unpack(cls, payload: bytes) -> BmapOut:
        return cls(abi.BMAP_OUT.unpack_from(payload)[0])


@dataclass(frozen=True, slots=True)
class LseekOut(Reply):
    offset: int

    def pack(self) -> bytes:
        return abi.LSEEK_OUT.pack(self.offset)

    @classmethod
    def unpack(cls, payload: bytes) -> LseekOut:
        return cls(abi.LSEEK_OUT.unpack_from(payload)[0])


@dataclass(frozen=True, slots=True)
class PollOut(Reply):
    revents: int

    def pack(self) -> bytes:
        return abi.POLL_OUT.pack(self.revents, 0)

    @classmethod
    def unpack(cls, payload: bytes) -> PollOut:
        return cls(abi.POLL_OUT.unpack_from(payload)[0])


@dataclass(frozen=True, slots=True)
class IoctlOut(Reply):
    result: int
    data: bytes = b""

    def pack(self) -> bytes:
        return abi.IOCTL_OUT.pack(self.result, 0, 0, 0) + self.data

    @classmethod
    def unpack(cls, payload: bytes) -> IoctlOut:
        result = abi.IOCTL_OUT.unpack_from(payload)[0]
        return cls(result, bytes(payload[abi.IOCTL_OUT.size :]))


@dataclass(frozen=True, slots=True)
class InitOut(Reply):
    major: int
    minor: int
    max_readahead: int
    flags: int
    max_background: int
    congestion_threshold: int
    max_write: int
    time_gran: int
    max_pages: int

    def pack(self) -> bytes:
        return abi.INIT_OUT.pack(
            self.major,
            self.minor,
            self.max_readahead,
            self.flags & 0xFFFFFFFF,
            self.max_background,
            self.congestion_threshold,
            self.max_write,
            self.time_gran,
            self.max_pages,
            0,
            self.flags >> 32,
        )

    @classmethod
    def unpack(cls, payload: bytes) -> InitOut:
        (major, minor, ra, flags, bg, cong, mw, tg, mp, _align, flags2) = abi.INIT_OUT.unpack_from(
            payload
        )
        return cls(major, minor, ra, flags | (flags2 << 32), bg, cong, mw, tg, mp)


def frame(unique: int, reply: Reply) -> list[bytes]:
    payload = reply.pack()
    chunks = payload if isinstance(payload, list) else [payload]
    size = abi.OUT_HEADER.size + sum(len(c) for c in chunks)
    return [abi.OUT_HEADER.pack(size, 0, unique), *chunks]


def error_frame(unique: int, err: int) -> list[bytes]:
    return [abi.OUT_HEADER.pack(abi.OUT_HEADER.size, -abs(err), unique)]


def parse_frame(data: bytes) -> tuple[int, int, bytes]:
    """(unique, errno, payload) of a reply frame; errno is positive or 0."""
    length, error, unique = abi.OUT_HEADER.unpack_from(data)
    return unique, -error, bytes(data[abi.OUT_HEADER.size : length])
