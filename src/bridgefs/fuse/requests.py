"""Kernel requests: one frozen dataclass per request body the kernel sends.

Each class mirrors a ``struct fuse_*_in`` of linux/fuse.h, its fields annotated with their wire
types (see wire.py, which reads the bytes into them).  Opcodes that share a body share a class, as
the kernel shares the struct (READ, READDIR and READDIRPLUS all send ``fuse_read_in``): the opcode
is in ``header.opcode``, and opcodes.py says which class each opcode sends.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import Annotated

from .wire import U32, U64, BadFrame, Layout, Name, Rest, SizedBy


@dataclass(frozen=True, slots=True)
class Header:
    opcode: int
    unique: int
    nodeid: int
    uid: int
    gid: int
    pid: int


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame that cannot be served: answer ``errno`` to ``unique`` (None: drop it, unanswered)."""

    unique: int | None
    errno: int
    reason: str
    opcode: int = 0


@dataclass(frozen=True, slots=True)
class Request:
    header: Header


@dataclass(frozen=True, slots=True)
class Unknown(Request):
    """An opcode not in the table (newer than this client): answered ENOSYS."""


@dataclass(frozen=True, slots=True)
class Bare(Request):
    """Nothing but the header: READLINK, STATFS, DESTROY, SYNCFS (whose 8 bytes are padding)."""


@dataclass(frozen=True, slots=True)
class Named(Request):
    """A single name in the node: LOOKUP, UNLINK, RMDIR, REMOVEXATTR."""

    name: Name


@dataclass(frozen=True, slots=True)
class Forget(Request):
    nlookup: U64


@dataclass(frozen=True, slots=True)
class BatchForget(Request):
    items: tuple[tuple[int, int], ...]  # (nodeid, nlookup)


@dataclass(frozen=True, slots=True)
class GetAttr(Request):
    getattr_flags: U32
    fh: U64


@dataclass(frozen=True, slots=True)
class SetAttrReq(Request):
    valid: U32
    fh: U64
    size: U64
    lock_owner: U64
    atime: U64
    mtime: U64
    ctime: U64
    atimensec: U32
    mtimensec: U32
    ctimensec: U32
    mode: U32
    unused4: U32
    uid: U32
    gid: U32


@dataclass(frozen=True, slots=True)
class Symlink(Request):
    name: Name
    target: Name


@dataclass(frozen=True, slots=True)
class MkNod(Request):
    mode: U32
    rdev: U32
    umask: U32
    name: Name


@dataclass(frozen=True, slots=True)
class MkDir(Request):
    mode: U32
    umask: U32
    name: Name


@dataclass(frozen=True, slots=True)
class Rename(Request):
    newdir: U64
    name: Name
    new_name: Name


@dataclass(frozen=True, slots=True)
class Rename2(Request):
    newdir: U64
    flags: U32
    name: Name
    new_name: Name


@dataclass(frozen=True, slots=True)
class Link(Request):
    oldnodeid: U64
    name: Name


@dataclass(frozen=True, slots=True)
class Open(Request):
    """OPEN and OPENDIR."""

    flags: U32
    open_flags: U32


@dataclass(frozen=True, slots=True)
class Read(Request):
    """READ, READDIR and READDIRPLUS."""

    fh: U64
    offset: U64
    size: U32
    read_flags: U32
    lock_owner: U64
    flags: U32


@dataclass(frozen=True, slots=True)
class Write(Request):
    fh: U64
    offset: U64
    size: U32
    write_flags: U32
    lock_owner: U64
    flags: U32
    data: Annotated[bytes, SizedBy("size")]


@dataclass(frozen=True, slots=True)
class Release(Request):
    """RELEASE and RELEASEDIR."""

    fh: U64
    flags: U32
    release_flags: U32
    lock_owner: U64


@dataclass(frozen=True, slots=True)
class Fsync(Request):
    """FSYNC and FSYNCDIR."""

    fh: U64
    fsync_flags: U32


@dataclass(frozen=True, slots=True)
class SetXattr(Request):
    # Without FUSE_SETXATTR_EXT the kernel sends the 8-byte compat struct.
    size: U32
    flags: U32
    name: Name
    value: Annotated[bytes, SizedBy("size")]


@dataclass(frozen=True, slots=True)
class GetXattr(Request):
    size: U32
    name: Name


@dataclass(frozen=True, slots=True)
class ListXattr(Request):
    size: U32


@dataclass(frozen=True, slots=True)
class Flush(Request):
    fh: U64
    unused: U32
    lock_owner: U64


@dataclass(frozen=True, slots=True)
class Init(Request):
    major: U32
    minor: U32
    max_readahead: U32
    flags: U64  # flags | flags2 << 32


@dataclass(frozen=True, slots=True)
class Lk(Request):
    """GETLK, SETLK and SETLKW."""

    fh: U64
    owner: U64
    start: U64
    end: U64
    type: U32
    pid: U32
    lk_flags: U32


@dataclass(frozen=True, slots=True)
class Access(Request):
    mask: U32


@dataclass(frozen=True, slots=True)
class Create(Request):
    """CREATE and TMPFILE."""

    flags: U32
    mode: U32
    umask: U32
    open_flags: U32
    name: Name


@dataclass(frozen=True, slots=True)
class Interrupt(Request):
    target: U64


@dataclass(frozen=True, slots=True)
class Bmap(Request):
    block: U64
    blocksize: U32


@dataclass(frozen=True, slots=True)
class Ioctl(Request):
    fh: U64
    flags: U32
    cmd: U32
    arg: U64
    in_size: U32
    out_size: U32
    data: Annotated[bytes, SizedBy("in_size")]


@dataclass(frozen=True, slots=True)
class Poll(Request):
    fh: U64
    kh: U64
    flags: U32
    events: U32


@dataclass(frozen=True, slots=True)
class NotifyReply(Request):
    payload: Rest


@dataclass(frozen=True, slots=True)
class Fallocate(Request):
    fh: U64
    offset: U64
    length: U64
    mode: U32


@dataclass(frozen=True, slots=True)
class Lseek(Request):
    fh: U64
    offset: U64
    whence: U32


@dataclass(frozen=True, slots=True)
class CopyFileRange(Request):
    """COPY_FILE_RANGE and COPY_FILE_RANGE_64 (which differ only in the reply)."""

    fh_in: U64
    off_in: U64
    nodeid_out: U64
    fh_out: U64
    off_out: U64
    length: U64
    flags: U64


@dataclass(frozen=True, slots=True)
class Mapping(Request):
    """SETUPMAPPING and REMOVEMAPPING (DAX, never negotiated)."""

    payload: Rest


@dataclass(frozen=True, slots=True)
class Statx(Request):
    getattr_flags: U32
    fh: U64
    sx_flags: U32
    sx_mask: U32


# --- the two bodies whose length varies ---------------------------------------------------------

_INIT_HEAD = struct.Struct("<IIII")
_INIT_FLAGS2 = struct.Struct("<I")
_INIT_IN_SIZE = 64


class _InitLayout(Layout):
    """fuse_init_in grew over the versions: 16 bytes from 7.x kernels, flags2 from 7.36 on."""

    fixed_size = _INIT_HEAD.size

    def unpack(self, header: Header, body: memoryview) -> Init:
        if len(body) < _INIT_HEAD.size:
            raise BadFrame(errno.EIO, "INIT shorter than 16 bytes")
        major, minor, readahead, flags = _INIT_HEAD.unpack_from(body)
        flags2 = _INIT_FLAGS2.unpack_from(body, 16)[0] if len(body) >= 20 else 0
        return Init(header, major, minor, readahead, flags | (flags2 << 32))

    def pack(self, req: Request) -> bytes:
        if not isinstance(req, Init):
            raise TypeError(f"not an Init: {req!r}")
        body = _INIT_HEAD.pack(req.major, req.minor, req.max_readahead, req.flags & 0xFFFFFFFF)
        body += _INIT_FLAGS2.pack(req.flags >> 32)
        return body + bytes(_INIT_IN_SIZE - len(body))


_BATCH_HEAD = struct.Struct("<II")
_FORGET_ONE = struct.Struct("<QQ")
# Enough to reject absurd batches before allocating: a request is at most max_write + 4 KiB.
_MAX_FORGETS = (1 << 21) // _FORGET_ONE.size


class _BatchForgetLayout(Layout):
    """fuse_batch_forget_in, then ``count`` fuse_forget_one."""

    fixed_size = _BATCH_HEAD.size

    def unpack(self, header: Header, body: memoryview) -> BatchForget:
        if len(body) < _BATCH_HEAD.size:
            raise BadFrame(errno.EINVAL, "BATCH_FORGET without count")
        count = _BATCH_HEAD.unpack_from(body)[0]
        end = _BATCH_HEAD.size + count * _FORGET_ONE.size
        if count > _MAX_FORGETS or len(body) < end:
            raise BadFrame(errno.EINVAL, f"BATCH_FORGET count {count} exceeds the frame")
        items = tuple(_FORGET_ONE.iter_unpack(body[_BATCH_HEAD.size : end]))
        return BatchForget(header, items)

    def pack(self, req: Request) -> bytes:
        if not isinstance(req, BatchForget):
            raise TypeError(f"not a BatchForget: {req!r}")
        items = b"".join(_FORGET_ONE.pack(*item) for item in req.items)
        return _BATCH_HEAD.pack(len(req.items), 0) + items


INIT_IN: Layout = _InitLayout()
BATCH_FORGET_IN: Layout = _BatchForgetLayout()
