"""Kernel requests: one frozen dataclass per opcode, and the table-driven decoder that builds them.

``decode(frame)`` never raises: a frame it cannot read becomes a ``Malformed`` carrying the errno to
answer with, or ``unique=None`` when the header itself is unreadable (nothing can be answered then).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import Callable, ClassVar

from .abi import IN_HEADER, Op


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
    """A frame that cannot be served: answer ``errno`` to ``unique``, or drop it if unique is None."""

    unique: int | None
    errno: int
    reason: str
    opcode: int = 0


class Request:
    """Base of all requests.  ``NO_REPLY`` requests must never be answered."""

    __slots__ = ()
    OP: ClassVar[int]
    NO_REPLY: ClassVar[bool] = False
    header: Header


def _req(op: Op, no_reply: bool = False):
    def wrap(cls):
        cls = dataclass(frozen=True, slots=True)(cls)
        cls.OP = op
        cls.NO_REPLY = no_reply
        return cls
    return wrap


@_req(Op.LOOKUP)
class Lookup(Request):
    header: Header
    name: bytes


@_req(Op.FORGET, no_reply=True)
class Forget(Request):
    header: Header
    nlookup: int


@_req(Op.BATCH_FORGET, no_reply=True)
class BatchForget(Request):
    header: Header
    items: tuple[tuple[int, int], ...]  # (nodeid, nlookup)


@_req(Op.GETATTR)
class GetAttr(Request):
    header: Header
    getattr_flags: int
    fh: int


@_req(Op.SETATTR)
class SetAttrReq(Request):
    header: Header
    valid: int
    fh: int
    size: int
    lock_owner: int
    atime: int
    mtime: int
    ctime: int
    atimensec: int
    mtimensec: int
    ctimensec: int
    mode: int
    uid: int
    gid: int


@_req(Op.READLINK)
class ReadLink(Request):
    header: Header


@_req(Op.SYMLINK)
class Symlink(Request):
    header: Header
    name: bytes
    target: bytes


@_req(Op.MKNOD)
class MkNod(Request):
    header: Header
    mode: int
    rdev: int
    umask: int
    name: bytes


@_req(Op.MKDIR)
class MkDir(Request):
    header: Header
    mode: int
    umask: int
    name: bytes


@_req(Op.UNLINK)
class Unlink(Request):
    header: Header
    name: bytes


@_req(Op.RMDIR)
class RmDir(Request):
    header: Header
    name: bytes


@_req(Op.RENAME)
class Rename(Request):
    header: Header
    newdir: int
    name: bytes
    new_name: bytes


@_req(Op.RENAME2)
class Rename2(Request):
    header: Header
    newdir: int
    flags: int
    name: bytes
    new_name: bytes


@_req(Op.LINK)
class Link(Request):
    header: Header
    oldnodeid: int
    name: bytes


@_req(Op.OPEN)
class Open(Request):
    header: Header
    flags: int
    open_flags: int


@_req(Op.OPENDIR)
class OpenDir(Request):
    header: Header
    flags: int
    open_flags: int


@_req(Op.READ)
class Read(Request):
    header: Header
    fh: int
    offset: int
    size: int
    read_flags: int
    lock_owner: int
    flags: int


@_req(Op.READDIR)
class ReadDir(Request):
    header: Header
    fh: int
    offset: int
    size: int
    read_flags: int
    lock_owner: int
    flags: int


@_req(Op.READDIRPLUS)
class ReadDirPlus(Request):
    header: Header
    fh: int
    offset: int
    size: int
    read_flags: int
    lock_owner: int
    flags: int


@_req(Op.WRITE)
class Write(Request):
    header: Header
    fh: int
    offset: int
    size: int
    write_flags: int
    lock_owner: int
    flags: int
    data: bytes


@_req(Op.STATFS)
class StatFsReq(Request):
    header: Header


@_req(Op.RELEASE)
class Release(Request):
    header: Header
    fh: int
    flags: int
    release_flags: int
    lock_owner: int


@_req(Op.RELEASEDIR)
class ReleaseDir(Request):
    header: Header
    fh: int
    flags: int
    release_flags: int
    lock_owner: int


@_req(Op.FSYNC)
class Fsync(Request):
    header: Header
    fh: int
    fsync_flags: int


@_req(Op.FSYNCDIR)
class FsyncDir(Request):
    header: Header
    fh: int
    fsync_flags: int


@_req(Op.SETXATTR)
class SetXattr(Request):
    header: Header
    size: int
    flags: int
    name: bytes
    value: bytes


@_req(Op.GETXATTR)
class GetXattr(Request):
    header: Header
    size: int
    name: bytes


@_req(Op.LISTXATTR)
class ListXattr(Request):
    header: Header
    size: int


@_req(Op.REMOVEXATTR)
class RemoveXattr(Request):
    header: Header
    name: bytes


@_req(Op.FLUSH)
class Flush(Request):
    header: Header
    fh: int
    lock_owner: int


@_req(Op.INIT)
class Init(Request):
    header: Header
    major: int
    minor: int
    max_readahead: int
    flags: int  # flags | flags2 << 32


@_req(Op.GETLK)
class GetLk(Request):
    header: Header
    fh: int
    owner: int
    start: int
    end: int
    type: int
    pid: int
    lk_flags: int


@_req(Op.SETLK)
class SetLk(Request):
    header: Header
    fh: int
    owner: int
    start: int
    end: int
    type: int
    pid: int
    lk_flags: int


@_req(Op.SETLKW)
class SetLkW(Request):
    header: Header
    fh: int
    owner: int
    start: int
    end: int
    type: int
    pid: int
    lk_flags: int


@_req(Op.ACCESS)
class Access(Request):
    header: Header
    mask: int


@_req(Op.CREATE)
class Create(Request):
    header: Header
    flags: int
    mode: int
    umask: int
    open_flags: int
    name: bytes


@_req(Op.TMPFILE)
class TmpFile(Request):
    header: Header
    flags: int
    mode: int
    umask: int
    open_flags: int
    name: bytes


@_req(Op.INTERRUPT, no_reply=True)
class Interrupt(Request):
    header: Header
    target: int


@_req(Op.BMAP)
class Bmap(Request):
    header: Header
    block: int
    blocksize: int


@_req(Op.DESTROY)
class Destroy(Request):
    header: Header


@_req(Op.IOCTL)
class Ioctl(Request):
    header: Header
    fh: int
    flags: int
    cmd: int
    arg: int
    in_size: int
    out_size: int
    data: bytes


@_req(Op.POLL)
class Poll(Request):
    header: Header
    fh: int
    kh: int
    flags: int
    events: int


@_req(Op.NOTIFY_REPLY, no_reply=True)
class NotifyReply(Request):
    header: Header
    payload: bytes


@_req(Op.FALLOCATE)
class Fallocate(Request):
    header: Header
    fh: int
    offset: int
    length: int
    mode: int


@_req(Op.LSEEK)
class Lseek(Request):
    header: Header
    fh: int
    offset: int
    whence: int


@_req(Op.COPY_FILE_RANGE)
class CopyFileRange(Request):
    header: Header
    fh_in: int
    off_in: int
    nodeid_out: int
    fh_out: int
    off_out: int
    length: int
    flags: int


@_req(Op.SETUPMAPPING)
class SetupMapping(Request):
    header: Header
    payload: bytes


@_req(Op.REMOVEMAPPING)
class RemoveMapping(Request):
    header: Header
    payload: bytes


@_req(Op.SYNCFS)
class SyncFs(Request):
    header: Header


class _Bad(Exception):
    def __init__(self, err: int, reason: str):
        self.errno = err
        self.reason = reason


def _split_names(body: memoryview, count: int) -> tuple[list[bytes], memoryview]:
    names = []
    rest = body
    for _ in range(count):
        raw = bytes(rest)
        end = raw.find(b"\0")
        if end < 0:
            raise _Bad(errno.EINVAL, "name without NUL terminator")
        names.append(raw[:end])
        rest = rest[end + 1:]
    return names, rest


# opcode -> (class, fixed-part struct, index of struct fields kept, names, tail)
# ``keep`` selects struct fields (drops padding); ``tail`` is how trailing bytes are used:
# None (ignored), "data" (the rest), or "sized" (exactly the value of the named field).
@dataclass(frozen=True)
class _Layout:
    cls: type
    fixed: struct.Struct | None = None
    keep: tuple[int, ...] | None = None
    names: int = 0
    tail: str | None = None
    sized_by: str | None = None
    names_after_tail: bool = False


_READ_IN = struct.Struct("<QQIIQII")
_RELEASE_IN = struct.Struct("<QIIQ")
_LK_IN = struct.Struct("<QQQQIIII")
_CREATE_IN = struct.Struct("<IIII")
_OPEN_IN = struct.Struct("<II")
_FSYNC_IN = struct.Struct("<QII")

LAYOUTS: dict[int, _Layout] = {
    Op.LOOKUP: _Layout(Lookup, names=1),
    Op.FORGET: _Layout(Forget, struct.Struct("<Q")),
    Op.GETATTR: _Layout(GetAttr, struct.Struct("<IIQ"), keep=(0, 2)),
    Op.SETATTR: _Layout(SetAttrReq, struct.Struct("<IIQQQQQQIIIIIIII"),
                        keep=(0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14)),
    Op.READLINK: _Layout(ReadLink),
    Op.SYMLINK: _Layout(Symlink, names=2),
    Op.MKNOD: _Layout(MkNod, struct.Struct("<IIII"), keep=(0, 1, 2), names=1),
    Op.MKDIR: _Layout(MkDir, struct.Struct("<II"), names=1),
    Op.UNLINK: _Layout(Unlink, names=1),
    Op.RMDIR: _Layout(RmDir, names=1),
    Op.RENAME: _Layout(Rename, struct.Struct("<Q"), names=2),
    Op.RENAME2: _Layout(Rename2, struct.Struct("<QII"), keep=(0, 1), names=2),
    Op.LINK: _Layout(Link, struct.Struct("<Q"), names=1),
    Op.OPEN: _Layout(Open, _OPEN_IN),
    Op.OPENDIR: _Layout(OpenDir, _OPEN_IN),
    Op.READ: _Layout(Read, _READ_IN, keep=(0, 1, 2, 3, 4, 5)),
    Op.READDIR: _Layout(ReadDir, _READ_IN, keep=(0, 1, 2, 3, 4, 5)),
    Op.READDIRPLUS: _Layout(ReadDirPlus, _READ_IN, keep=(0, 1, 2, 3, 4, 5)),
    Op.WRITE: _Layout(Write, _READ_IN, keep=(0, 1, 2, 3, 4, 5), tail="sized", sized_by="size"),
    Op.STATFS: _Layout(StatFsReq),
    Op.RELEASE: _Layout(Release, _RELEASE_IN),
    Op.RELEASEDIR: _Layout(ReleaseDir, _RELEASE_IN),
    Op.FSYNC: _Layout(Fsync, _FSYNC_IN, keep=(0, 1)),
    Op.FSYNCDIR: _Layout(FsyncDir, _FSYNC_IN, keep=(0, 1)),
    # Without FUSE_SETXATTR_EXT the kernel sends the 8-byte compat struct.
    Op.SETXATTR: _Layout(SetXattr, struct.Struct("<II"), names=1, tail="sized", sized_by="size"),
    Op.GETXATTR: _Layout(GetXattr, struct.Struct("<II"), keep=(0,), names=1),
    Op.LISTXATTR: _Layout(ListXattr, struct.Struct("<II"), keep=(0,)),
    Op.REMOVEXATTR: _Layout(RemoveXattr, names=1),
    Op.FLUSH: _Layout(Flush, struct.Struct("<QIIQ"), keep=(0, 3)),
    Op.GETLK: _Layout(GetLk, _LK_IN, keep=(0, 1, 2, 3, 4, 5, 6)),
    Op.SETLK: _Layout(SetLk, _LK_IN, keep=(0, 1, 2, 3, 4, 5, 6)),
    Op.SETLKW: _Layout(SetLkW, _LK_IN, keep=(0, 1, 2, 3, 4, 5, 6)),
    Op.ACCESS: _Layout(Access, struct.Struct("<II"), keep=(0,)),
    Op.CREATE: _Layout(Create, _CREATE_IN, names=1),
    Op.TMPFILE: _Layout(TmpFile, _CREATE_IN, names=1),
    Op.INTERRUPT: _Layout(Interrupt, struct.Struct("<Q")),
    Op.BMAP: _Layout(Bmap, struct.Struct("<QII"), keep=(0, 1)),
    Op.DESTROY: _Layout(Destroy),
    Op.IOCTL: _Layout(Ioctl, struct.Struct("<QIIQII"), tail="sized", sized_by="in_size"),
    Op.POLL: _Layout(Poll, struct.Struct("<QQII")),
    Op.NOTIFY_REPLY: _Layout(NotifyReply, tail="data"),
    Op.FALLOCATE: _Layout(Fallocate, struct.Struct("<QQQII"), keep=(0, 1, 2, 3)),
    Op.LSEEK: _Layout(Lseek, struct.Struct("<QQII"), keep=(0, 1, 2)),
    Op.COPY_FILE_RANGE: _Layout(CopyFileRange, struct.Struct("<QQQQQQQ")),
    Op.SETUPMAPPING: _Layout(SetupMapping, tail="data"),
    Op.REMOVEMAPPING: _Layout(RemoveMapping, tail="data"),
    Op.SYNCFS: _Layout(SyncFs),
}

_INIT_HEAD = struct.Struct("<IIII")
_BATCH_HEAD = struct.Struct("<II")
_FORGET_ONE = struct.Struct("<QQ")
# Enough to reject absurd batches before allocating: a request is at most max_write + 4 KiB.
_MAX_FORGETS = (1 << 21) // _FORGET_ONE.size


def _decode_init(header: Header, body: memoryview) -> Init:
    if len(body) < _INIT_HEAD.size:
        raise _Bad(errno.EIO, "INIT shorter than 16 bytes")
    major, minor, readahead, flags = _INIT_HEAD.unpack_from(body)
    flags2 = struct.unpack_from("<I", body, 16)[0] if len(body) >= 20 else 0
    return Init(header, major, minor, readahead, flags | (flags2 << 32))


def _decode_batch_forget(header: Header, body: memoryview) -> BatchForget:
    if len(body) < _BATCH_HEAD.size:
        raise _Bad(errno.EINVAL, "BATCH_FORGET without count")
    count = _BATCH_HEAD.unpack_from(body)[0]
    if count > _MAX_FORGETS or len(body) < _BATCH_HEAD.size + count * _FORGET_ONE.size:
        raise _Bad(errno.EINVAL, f"BATCH_FORGET count {count} exceeds the frame")
    items = tuple(_FORGET_ONE.iter_unpack(body[_BATCH_HEAD.size:_BATCH_HEAD.size + count * 16]))
    return BatchForget(header, items)


_SPECIAL: dict[int, Callable[[Header, memoryview], Request]] = {
    Op.INIT: _decode_init,
    Op.BATCH_FORGET: _decode_batch_forget,
}


def _decode_body(layout: _Layout, header: Header, body: memoryview) -> Request:
    values: list = [header]
    fields: dict[str, int] = {}
    if layout.fixed is not None:
        if len(body) < layout.fixed.size:
            raise _Bad(errno.EINVAL, f"{len(body)}-byte body, {layout.fixed.size} expected")
        raw = layout.fixed.unpack_from(body)
        kept = raw if layout.keep is None else tuple(raw[i] for i in layout.keep)
        values.extend(kept)
        if layout.sized_by is not None:
            names = [f for f in layout.cls.__dataclass_fields__ if f != "header"]
            fields = dict(zip(names, kept))
        body = body[layout.fixed.size:]
    if layout.names:
        names, body = _split_names(body, layout.names)
        values.extend(names)
    if layout.tail == "data":
        values.append(bytes(body))
    elif layout.tail == "sized":
        size = fields[layout.sized_by]
        if size > len(body):
            raise _Bad(errno.EINVAL, f"payload of {len(body)} bytes, {size} announced")
        values.append(bytes(body[:size]))
    return layout.cls(*values)


def decode(frame: bytes | bytearray | memoryview) -> Request | Malformed:
    """One request frame (as read from /dev/fuse) -> a Request, or a Malformed to answer/drop."""
    view = memoryview(frame)
    if len(view) < IN_HEADER.size:
        return Malformed(None, errno.EIO, f"frame of {len(view)} bytes has no header")
    length, opcode, unique, nodeid, uid, gid, pid, extlen, _ = IN_HEADER.unpack_from(view)
    if length != len(view):
        return Malformed(unique, errno.EIO, f"header says {length} bytes, frame has {len(view)}",
                         opcode)
    end = length - extlen * 8
    if end < IN_HEADER.size:
        return Malformed(unique, errno.EIO, "extensions longer than the frame", opcode)
    header = Header(opcode, unique, nodeid, uid, gid, pid)
    body = view[IN_HEADER.size:end]
    try:
        special = _SPECIAL.get(opcode)
        if special is not None:
            return special(header, body)
        layout = LAYOUTS.get(opcode)
        if layout is None:
            return Malformed(unique, errno.ENOSYS, f"unknown opcode {opcode}", opcode)
        return _decode_body(layout, header, body)
    except _Bad as bad:
        return Malformed(unique, bad.errno, bad.reason, opcode)
    except (struct.error, ValueError, TypeError) as exc:  # a layout bug must not kill the loop
        return Malformed(unique, errno.EIO, f"undecodable: {exc}", opcode)


def encode_request(req: Request, uid: int = 0, gid: int = 0, pid: int = 0) -> bytes:
    """The inverse of decode, for tests and tools: builds the frame the kernel would send."""
    if isinstance(req, Init):
        body = _INIT_HEAD.pack(req.major, req.minor, req.max_readahead, req.flags & 0xFFFFFFFF)
        body += struct.pack("<I", req.flags >> 32) + bytes(44)
    elif isinstance(req, BatchForget):
        body = _BATCH_HEAD.pack(len(req.items), 0) + b"".join(_FORGET_ONE.pack(*i) for i in req.items)
    else:
        layout = LAYOUTS[req.OP]
        names = [f for f in layout.cls.__dataclass_fields__ if f != "header"]
        values = [getattr(req, f) for f in names]
        body = b""
        if layout.fixed is not None:
            n = len(layout.fixed.format) - 1 if layout.keep is None else len(layout.keep)
            kept, values = values[:n], values[n:]
            full = [0] * (len(layout.fixed.unpack(bytes(layout.fixed.size))))
            for slot, value in zip(layout.keep or range(len(full)), kept):
                full[slot] = value
            body = layout.fixed.pack(*full)
        for value in values[:layout.names]:
            body += value + b"\0"
        if layout.tail:
            body += values[layout.names]
    h = req.header
    return IN_HEADER.pack(IN_HEADER.size + len(body), req.OP, h.unique, h.nodeid, h.uid, h.gid,
                          h.pid, 0, 0) + body
