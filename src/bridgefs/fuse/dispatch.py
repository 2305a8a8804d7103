"""From a decoded request to a call on the FileSystem and a typed reply: one method per opcode.

Which method serves an opcode, and whether it is answered at all, comes from the table in
opcodes.py (``do_`` + the opcode's name).  No I/O here.  Errors leave as exceptions
(FsError/OSError); ``respond`` turns them into errno replies.  Entries that reach the kernel are
counted here, in one place, for every filesystem.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import abi
from . import requests as rq
from .codec import decode
from .dirents import pack_dirents
from .filesystem import TIME_NOW, Context, Entry, FileSystem, FsError, Lock, SetAttr
from .lookups import LookupCounts
from .negotiate import Negotiated, Tuning, negotiate
from .opcodes import OPERATIONS
from .replies import (
    AttrOut,
    BmapOut,
    CopyOut,
    CreateOut,
    Data,
    DirData,
    Empty,
    EntryOut,
    InitOut,
    IoctlOut,
    LkOut,
    LseekOut,
    OpenOut,
    PollOut,
    Reply,
    StatFsOut,
    WriteOut,
    XattrSize,
    error_frame,
    frame,
)

log = logging.getLogger(__name__)

XATTR_SIZE_MAX = 65536

# Each takes the request class its opcode's row names.
Handler = Callable[[Any, Context], Reply | None]


@dataclass(slots=True)
class Outcome:
    """What to do with one frame: write ``chunks`` (None: nothing to write)."""

    chunks: list[bytes] | None
    reply: Reply | None
    opcode: int
    failed: bool


class Dispatcher:
    def __init__(
        self, fs: FileSystem, tuning: Tuning | None = None, counts: LookupCounts | None = None
    ):
        self.fs = fs
        self.tuning = tuning or Tuning()
        self.counts = counts or LookupCounts()
        self.negotiated: Negotiated | None = None
        self.destroyed = False
        # A row without its method fails here, at the first mount, not at the first request.
        self._handlers: dict[int, Handler] = {
            op: getattr(self, "do_" + row.name.lower()) for op, row in OPERATIONS.items()
        }
        self._silent = frozenset(op for op, row in OPERATIONS.items() if not row.answered)
        self._inflight: dict[int, Context] = {}
        self._unknown_seen: set[int] = set()
        # Told (unique, caller's thread id) of each request interrupted while being served.
        self.on_interrupt: Callable[[int, int], None] | None = None

    def respond(self, raw: bytes | memoryview) -> Outcome:
        """One frame from the kernel -> what to answer.  Never raises: garbage becomes an errno
        reply, or a logged drop when not even the request id can be read."""
        req = decode(raw)
        if isinstance(req, rq.Malformed):
            log.warning("malformed request (opcode %d): %s", req.opcode, req.reason)
            chunks = None if req.unique is None else error_frame(req.unique, req.errno)
            return Outcome(chunks, None, req.opcode, True)
        h = req.header
        if isinstance(req, rq.Interrupt):
            return Outcome(self._interrupt(req), None, h.opcode, False)
        ctx = Context(h.uid, h.gid, h.pid, h.unique)
        self._inflight[h.unique] = ctx
        reply: Reply | None = None
        try:
            reply = self.handle(req, ctx)
            chunks = frame(h.unique, reply) if reply is not None else None
            failed = False
        except OSError as exc:
            chunks, failed = error_frame(h.unique, exc.errno or errno.EIO), True
        except Exception:
            log.exception("%s on node %d failed", type(req).__name__, h.nodeid)
            chunks, failed = error_frame(h.unique, errno.EIO), True
        finally:
            del self._inflight[h.unique]
        if h.opcode in self._silent:
            chunks = None
        return Outcome(chunks, reply, h.opcode, failed)

    def _interrupt(self, req: rq.Interrupt) -> list[bytes] | None:
        ctx = self._inflight.get(req.target)
        if ctx is not None:
            ctx.interrupted.set()
            if self.on_interrupt is not None:
                self.on_interrupt(req.target, ctx.pid)
            return None
        # Not (yet) being served: EAGAIN makes the kernel send the interrupt again (or drop it,
        # if the request has finished meanwhile).
        return error_frame(req.header.unique, errno.EAGAIN)

    def in_flight(self, unique: int) -> bool:
        return unique in self._inflight

    def handle(self, req: rq.Request, ctx: Context) -> Reply | None:
        """The reply for ``req`` (None for requests that take none).  Raises OSError for errno."""
        opcode = req.header.opcode
        handler = self._handlers.get(opcode)
        if handler is None:
            if opcode not in self._unknown_seen:  # the kernel may ask again: say so once
                self._unknown_seen.add(opcode)
                log.info("opcode %d is newer than this client: answered ENOSYS", opcode)
            raise FsError(errno.ENOSYS)
        if self.negotiated is None and opcode != abi.Op.INIT:
            raise FsError(errno.EIO, "request before INIT")
        return handler(req, ctx)

    # --- bookkeeping -------------------------------------------------------------------------
    def _entry(self, entry: Entry) -> EntryOut:
        self.counts.add(entry.ino)
        return EntryOut(entry)

    def uncount(self, reply: Reply | None) -> None:
        """The kernel did not take ``reply`` (the request was interrupted): undo its counts."""
        if isinstance(reply, DirData):
            inos = reply.counted
        elif isinstance(reply, (EntryOut, CreateOut)):
            inos = (reply.entry.ino,)
        else:
            return
        for ino in inos:
            self._forget(ino, 1)

    def _forget(self, ino: int, n: int) -> None:
        handed_out = self.counts.drop(ino, n)
        if handed_out:
            try:
                self.fs.forget(ino, handed_out)
            except Exception:  # a forget has no reply to carry an error: log and go on
                log.exception("forget(%d) failed", ino)

    # --- session ------------------------------------------------------------------------------
    def do_init(self, req: rq.Init, ctx: Context) -> InitOut:
        out, self.negotiated = negotiate(
            req.major, req.minor, req.flags, req.max_readahead, self.tuning
        )
        self.fs.init()
        return out

    def do_destroy(self, req: rq.Bare, ctx: Context) -> Empty:
        self.destroyed = True
        self.fs.destroy()
        return Empty()

    def do_forget(self, req: rq.Forget, ctx: Context) -> None:
        self._forget(req.header.nodeid, req.nlookup)

    def do_batch_forget(self, req: rq.BatchForget, ctx: Context) -> None:
        for ino, n in req.items:
            self._forget(ino, n)

    def do_interrupt(self, req: rq.Interrupt, ctx: Context) -> None:
        return None  # respond() routes interrupts before dispatch

    def do_notify_reply(self, req: rq.NotifyReply, ctx: Context) -> None:
        return None

    def do_setupmapping(self, req: rq.Mapping, ctx: Context) -> Reply:
        raise FsError(errno.ENOSYS)  # DAX is never negotiated

    def do_removemapping(self, req: rq.Mapping, ctx: Context) -> Reply:
        raise FsError(errno.ENOSYS)

    # --- names --------------------------------------------------------------------------------
    def do_lookup(self, req: rq.Named, ctx: Context) -> EntryOut:
        return self._entry(self.fs.lookup(ctx, req.header.nodeid, req.name))

    def do_mknod(self, req: rq.MkNod, ctx: Context) -> EntryOut:
        return self._entry(
            self.fs.mknod(ctx, req.header.nodeid, req.name, req.mode, req.rdev, req.umask)
        )

    def do_mkdir(self, req: rq.MkDir, ctx: Context) -> EntryOut:
        return self._entry(self.fs.mkdir(ctx, req.header.nodeid, req.name, req.mode, req.umask))

    def do_symlink(self, req: rq.Symlink, ctx: Context) -> EntryOut:
        return self._entry(self.fs.symlink(ctx, req.header.nodeid, req.name, req.target))

    def do_link(self, req: rq.Link, ctx: Context) -> EntryOut:
        return self._entry(self.fs.link(ctx, req.oldnodeid, req.header.nodeid, req.name))

    def do_unlink(self, req: rq.Named, ctx: Context) -> Empty:
        self.fs.unlink(ctx, req.header.nodeid, req.name)
        return Empty()

    def do_rmdir(self, req: rq.Named, ctx: Context) -> Empty:
        self.fs.rmdir(ctx, req.header.nodeid, req.name)
        return Empty()

    def do_rename(self, req: rq.Rename, ctx: Context) -> Empty:
        self.fs.rename(ctx, req.header.nodeid, req.name, req.newdir, req.new_name, 0)
        return Empty()

    def do_rename2(self, req: rq.Rename2, ctx: Context) -> Empty:
        self.fs.rename(ctx, req.header.nodeid, req.name, req.newdir, req.new_name, req.flags)
        return Empty()

    # --- attributes -----------------------------------------------------------------------------
    def do_getattr(self, req: rq.GetAttr, ctx: Context) -> AttrOut:
        fh = req.fh if req.getattr_flags & abi.GETATTR_FH else None
        return AttrOut(self.fs.getattr(ctx, req.header.nodeid, fh))

    def do_statx(self, req: rq.Statx, ctx: Context) -> Reply:
        raise FsError(errno.ENOSYS)  # the kernel falls back to GETATTR for good

    def do_setattr(self, req: rq.SetAttrReq, ctx: Context) -> AttrOut:
        v = req.valid
        changes = SetAttr(
            mode=req.mode if v & abi.FATTR_MODE else None,
            uid=req.uid if v & abi.FATTR_UID else None,
            gid=req.gid if v & abi.FATTR_GID else None,
            size=req.size if v & abi.FATTR_SIZE else None,
            atime_ns=(
                TIME_NOW
                if v & abi.FATTR_ATIME_NOW
                else req.atime * 10**9 + req.atimensec
                if v & abi.FATTR_ATIME
                else None
            ),
            mtime_ns=(
                TIME_NOW
                if v & abi.FATTR_MTIME_NOW
                else req.mtime * 10**9 + req.mtimensec
                if v & abi.FATTR_MTIME
                else None
            ),
            ctime_ns=req.ctime * 10**9 + req.ctimensec if v & abi.FATTR_CTIME else None,
            kill_suidgid=bool(v & abi.FATTR_KILL_SUIDGID),
        )
        fh = req.fh if v & abi.FATTR_FH else None
        return AttrOut(self.fs.setattr(ctx, req.header.nodeid, changes, fh))

    def do_readlink(self, req: rq.Bare, ctx: Context) -> Data:
        return Data(self.fs.readlink(ctx, req.header.nodeid))

    def do_access(self, req: rq.Access, ctx: Context) -> Empty:
        self.fs.access(ctx, req.header.nodeid, req.mask)
        return Empty()

    def do_statfs(self, req: rq.Bare, ctx: Context) -> StatFsOut:
        return StatFsOut(self.fs.statfs(ctx, req.header.nodeid))

    # --- extended attributes ------------------------------------------------------------------
    def do_setxattr(self, req: rq.SetXattr, ctx: Context) -> Empty:
        self.fs.setxattr(ctx, req.header.nodeid, req.name, req.value, req.flags)
        return Empty()

    def do_getxattr(self, req: rq.GetXattr, ctx: Context) -> XattrSize | Data:
        return _sized(self.fs.getxattr(ctx, req.header.nodeid, req.name), req.size)

    def do_listxattr(self, req: rq.ListXattr, ctx: Context) -> XattrSize | Data:
        names = self.fs.listxattr(ctx, req.header.nodeid)
        return _sized(b"".join(n + b"\0" for n in names), req.size)

    def do_removexattr(self, req: rq.Named, ctx: Context) -> Empty:
        self.fs.removexattr(ctx, req.header.nodeid, req.name)
        return Empty()

    # --- files ------------------------------------------------------------------------------------
    def do_open(self, req: rq.Open, ctx: Context) -> OpenOut:
        return OpenOut(self.fs.open(ctx, req.header.nodeid, req.flags))

    def do_create(self, req: rq.Create, ctx: Context) -> CreateOut:
        entry, opened = self.fs.create(
            ctx, req.header.nodeid, req.name, req.mode, req.umask, req.flags
        )
        self.counts.add(entry.ino)
        return CreateOut(entry, opened)

    def do_tmpfile(self, req: rq.Create, ctx: Context) -> Reply:
        raise FsError(errno.EOPNOTSUPP)

    def do_read(self, req: rq.Read, ctx: Context) -> Data:
        data = self.fs.read(ctx, req.header.nodeid, req.fh, req.offset, req.size)
        return Data(data[: req.size] if len(data) > req.size else data)

    def do_write(self, req: rq.Write, ctx: Context) -> WriteOut:
        return WriteOut(
            self.fs.write(ctx, req.header.nodeid, req.fh, req.offset, req.data, req.write_flags)
        )

    def do_flush(self, req: rq.Flush, ctx: Context) -> Empty:
        self.fs.flush(ctx, req.header.nodeid, req.fh, req.lock_owner)
        return Empty()

    def do_release(self, req: rq.Release, ctx: Context) -> Empty:
        self.fs.release(ctx, req.header.nodeid, req.fh, req.flags)
        return Empty()

    def do_fsync(self, req: rq.Fsync, ctx: Context) -> Empty:
        self.fs.fsync(ctx, req.header.nodeid, req.fh, bool(req.fsync_flags & abi.FSYNC_FDATASYNC))
        return Empty()

    def do_fallocate(self, req: rq.Fallocate, ctx: Context) -> Empty:
        self.fs.fallocate(ctx, req.header.nodeid, req.fh, req.offset, req.length, req.mode)
        return Empty()

    def do_lseek(self, req: rq.Lseek, ctx: Context) -> LseekOut:
        return LseekOut(self.fs.lseek(ctx, req.header.nodeid, req.fh, req.offset, req.whence))

    def _copy_file_range(self, req: rq.CopyFileRange, ctx: Context) -> int:
        return self.fs.copy_file_range(
            ctx,
            req.header.nodeid,
            req.fh_in,
            req.off_in,
            req.nodeid_out,
            req.fh_out,
            req.off_out,
            req.length,
            req.flags,
        )

    def do_copy_file_range(self, req: rq.CopyFileRange, ctx: Context) -> WriteOut:
        return WriteOut(self._copy_file_range(req, ctx))

    def do_copy_file_range_64(self, req: rq.CopyFileRange, ctx: Context) -> CopyOut:
        return CopyOut(self._copy_file_range(req, ctx))

    def do_getlk(self, req: rq.Lk, ctx: Context) -> LkOut:
        lock = Lock(req.start, req.end, req.type, req.pid)
        return LkOut(self.fs.getlk(ctx, req.header.nodeid, req.fh, req.owner, lock))

    def _setlk(self, req: rq.Lk, ctx: Context, sleep: bool) -> Empty:
        lock = Lock(req.start, req.end, req.type, req.pid)
        self.fs.setlk(
            ctx,
            req.header.nodeid,
            req.fh,
            req.owner,
            lock,
            sleep,
            bool(req.lk_flags & abi.LK_FLOCK),
        )
        return Empty()

    def do_setlk(self, req: rq.Lk, ctx: Context) -> Empty:
        return self._setlk(req, ctx, sleep=False)

    def do_setlkw(self, req: rq.Lk, ctx: Context) -> Empty:
        return self._setlk(req, ctx, sleep=True)

    def do_bmap(self, req: rq.Bmap, ctx: Context) -> BmapOut:
        return BmapOut(self.fs.bmap(ctx, req.header.nodeid, req.block, req.blocksize))

    def do_ioctl(self, req: rq.Ioctl, ctx: Context) -> IoctlOut:
        result, data = self.fs.ioctl(
            ctx, req.header.nodeid, req.fh, req.cmd, req.arg, req.data, req.out_size
        )
        return IoctlOut(result, data[: req.out_size])

    def do_poll(self, req: rq.Poll, ctx: Context) -> PollOut:
        return PollOut(self.fs.poll(ctx, req.header.nodeid, req.fh, req.events))

    # --- directories ----------------------------------------------------------------------------
    def do_opendir(self, req: rq.Open, ctx: Context) -> OpenOut:
        return OpenOut(self.fs.opendir(ctx, req.header.nodeid, req.flags))

    def do_readdir(self, req: rq.Read, ctx: Context) -> Data:
        records = self.fs.readdir(ctx, req.header.nodeid, req.fh, req.offset, False)
        data, _ = pack_dirents(records, req.size, plus=False)
        return Data(data)

    def do_readdirplus(self, req: rq.Read, ctx: Context) -> DirData:
        records = self.fs.readdir(ctx, req.header.nodeid, req.fh, req.offset, True)
        data, packed = pack_dirents(records, req.size, plus=True)
        counted = tuple(
            r.entry.ino
            for r in packed
            if r.entry is not None and r.entry.ino and r.name not in (b".", b"..")
        )
        for ino in counted:
            self.counts.add(ino)
        return DirData(data, counted)

    def do_releasedir(self, req: rq.Release, ctx: Context) -> Empty:
        self.fs.releasedir(ctx, req.header.nodeid, req.fh)
        return Empty()

    def do_fsyncdir(self, req: rq.Fsync, ctx: Context) -> Empty:
        self.fs.fsyncdir(
            ctx, req.header.nodeid, req.fh, bool(req.fsync_flags & abi.FSYNC_FDATASYNC)
        )
        return Empty()

    def do_syncfs(self, req: rq.Bare, ctx: Context) -> Empty:
        self.fs.syncfs(ctx, req.header.nodeid)
        return Empty()


def _sized(value: bytes, size: int) -> XattrSize | Data:
    """getxattr/listxattr: size 0 asks only for the length; a short buffer is ERANGE."""
    if size == 0:
        return XattrSize(len(value))
    if len(value) > size:
        raise FsError(errno.ERANGE)
    return Data(value)
