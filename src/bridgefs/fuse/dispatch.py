"""From a decoded request to a call on the FileSystem and a typed reply: one method per opcode.

No I/O here.  Errors leave as exceptions (FsError/OSError); the session turns them into errno
replies.  Entries that reach the kernel are counted here, in one place, for every filesystem.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from typing import Callable

from . import abi
from . import requests as rq
from .dirents import pack_dirents
from .filesystem import TIME_NOW, Context, FileSystem, FsError, Lock, SetAttr
from .lookups import LookupCounts
from .negotiate import Negotiated, Tuning, negotiate
from .replies import (AttrOut, BmapOut, CreateOut, Data, Empty, EntryOut, IoctlOut, LkOut, LseekOut,
                      OpenOut, PollOut, Reply, StatFsOut, WriteOut, XattrSize, error_frame, frame)

log = logging.getLogger(__name__)

XATTR_SIZE_MAX = 65536


@dataclass(slots=True)
class Outcome:
    """What to do with one frame: write ``chunks`` (None: nothing to write)."""

    chunks: list[bytes] | None
    reply: Reply | None
    opcode: int
    failed: bool


class Dispatcher:
    def __init__(self, fs: FileSystem, tuning: Tuning | None = None,
                 counts: LookupCounts | None = None):
        self.fs = fs
        self.tuning = tuning or Tuning()
        self.counts = counts or LookupCounts()
        self.negotiated: Negotiated | None = None
        self.destroyed = False
        self._table: dict[int, Callable[[rq.Request, Context], Reply | None]] = {
            op: getattr(self, "do_" + abi.Op(op).name.lower()) for op in rq.LAYOUTS
        }
        self._table[abi.Op.INIT] = self.do_init
        self._table[abi.Op.BATCH_FORGET] = self.do_batch_forget
        self._inflight: dict[int, Context] = {}

    def respond(self, raw: bytes | memoryview) -> Outcome:
        """One frame from the kernel -> what to answer.  Never raises: garbage becomes an errno
        reply, or a logged drop when not even the request id can be read."""
        req = rq.decode(raw)
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
        if req.NO_REPLY:
            chunks = None
        return Outcome(chunks, reply, h.opcode, failed)

    def _interrupt(self, req: rq.Interrupt) -> list[bytes] | None:
        ctx = self._inflight.get(req.target)
        if ctx is not None:
            ctx.interrupted.set()
            return None
        # Not (yet) being served: EAGAIN makes the kernel send the interrupt again (or drop it,
        # if the request has finished meanwhile).
        return error_frame(req.header.unique, errno.EAGAIN)

    def handle(self, req: rq.Request, ctx: Context) -> Reply | None:
        """The reply for ``req`` (None for requests that take none).  Raises OSError for errno."""
        if self.negotiated is None and req.header.opcode != abi.Op.INIT:
            raise FsError(errno.EIO, "request before INIT")
        return self._table[req.header.opcode](req, ctx)

    # --- bookkeeping -------------------------------------------------------------------------
    def _entry(self, entry) -> EntryOut:
        self.counts.add(entry.ino)
        return EntryOut(entry)

    def uncount(self, reply: Reply | None) -> None:
        """The kernel did not take ``reply`` (the request was interrupted): undo its counts."""
        inos = getattr(reply, "counted", None)
        if inos is None and isinstance(reply, (EntryOut, CreateOut)):
            inos = (reply.entry.ino,)
        for ino in inos or ():
            self._forget(ino, 1)

    def _forget(self, ino: int, n: int) -> None:
        handed_out = self.counts.drop(ino, n)
        if handed_out:
            try:
                self.fs.forget(ino, handed_out)
            except Exception:  # a forget has no reply to carry an error: log and go on
                log.exception("forget(%d) failed", ino)

    # --- session ------------------------------------------------------------------------------
    def do_init(self, req: rq.Init, ctx: Context) -> Reply:
        out, self.negotiated = negotiate(req.major, req.minor, req.flags, req.max_readahead,
                                         self.tuning)
        self.fs.init()
        return out

    def do_destroy(self, req: rq.Destroy, ctx: Context) -> Reply:
        self.destroyed = True
        self.fs.destroy()
        return Empty()

    def do_forget(self, req: rq.Forget, ctx: Context) -> None:
        self._forget(req.header.nodeid, req.nlookup)

    def do_batch_forget(self, req: rq.BatchForget, ctx: Context) -> None:
        for ino, n in req.items:
            self._forget(ino, n)

    def do_interrupt(self, req: rq.Interrupt, ctx: Context) -> None:
        return None  # the session routes interrupts before dispatch

    def do_notify_reply(self, req: rq.NotifyReply, ctx: Context) -> None:
        return None

    def do_setupmapping(self, req, ctx) -> Reply:
        raise FsError(errno.ENOSYS)

    do_removemapping = do_setupmapping

    # --- names --------------------------------------------------------------------------------
    def do_lookup(self, req: rq.Lookup, ctx: Context) -> Reply:
        return self._entry(self.fs.lookup(ctx, req.header.nodeid, req.name))

    def do_mknod(self, req: rq.MkNod, ctx: Context) -> Reply:
        return self._entry(self.fs.mknod(ctx, req.header.nodeid, req.name, req.mode, req.rdev,
                                         req.umask))

    def do_mkdir(self, req: rq.MkDir, ctx: Context) -> Reply:
        return self._entry(self.fs.mkdir(ctx, req.header.nodeid, req.name, req.mode, req.umask))

    def do_symlink(self, req: rq.Symlink, ctx: Context) -> Reply:
        return self._entry(self.fs.symlink(ctx, req.header.nodeid, req.name, req.target))

    def do_link(self, req: rq.Link, ctx: Context) -> Reply:
        return self._entry(self.fs.link(ctx, req.oldnodeid, req.header.nodeid, req.name))

    def do_unlink(self, req: rq.Unlink, ctx: Context) -> Reply:
        self.fs.unlink(ctx, req.header.nodeid, req.name)
        return Empty()

    def do_rmdir(self, req: rq.RmDir, ctx: Context) -> Reply:
        self.fs.rmdir(ctx, req.header.nodeid, req.name)
        return Empty()

    def do_rename(self, req: rq.Rename, ctx: Context) -> Reply:
        self.fs.rename(ctx, req.header.nodeid, req.name, req.newdir, req.new_name, 0)
        return Empty()

    def do_rename2(self, req: rq.Rename2, ctx: Context) -> Reply:
        self.fs.rename(ctx, req.header.nodeid, req.name, req.newdir, req.new_name, req.flags)
        return Empty()

    # --- attributes -----------------------------------------------------------------------------
    def do_getattr(self, req: rq.GetAttr, ctx: Context) -> Reply:
        fh = req.fh if req.getattr_flags & abi.GETATTR_FH else None
        return AttrOut(self.fs.getattr(ctx, req.header.nodeid, fh))

    def do_setattr(self, req: rq.SetAttrReq, ctx: Context) -> Reply:
        v = req.valid
        changes = SetAttr(
            mode=req.mode if v & abi.FATTR_MODE else None,
            uid=req.uid if v & abi.FATTR_UID else None,
            gid=req.gid if v & abi.FATTR_GID else None,
            size=req.size if v & abi.FATTR_SIZE else None,
            atime_ns=(TIME_NOW if v & abi.FATTR_ATIME_NOW else
                      req.atime * 10**9 + req.atimensec if v & abi.FATTR_ATIME else None),
            mtime_ns=(TIME_NOW if v & abi.FATTR_MTIME_NOW else
                      req.mtime * 10**9 + req.mtimensec if v & abi.FATTR_MTIME else None),
            ctime_ns=req.ctime * 10**9 + req.ctimensec if v & abi.FATTR_CTIME else None,
            kill_suidgid=bool(v & abi.FATTR_KILL_SUIDGID),
        )
        fh = req.fh if v & abi.FATTR_FH else None
        return AttrOut(self.fs.setattr(ctx, req.header.nodeid, changes, fh))

    def do_readlink(self, req: rq.ReadLink, ctx: Context) -> Reply:
        return Data(self.fs.readlink(ctx, req.header.nodeid))

    def do_access(self, req: rq.Access, ctx: Context) -> Reply:
        self.fs.access(ctx, req.header.nodeid, req.mask)
        return Empty()

    def do_statfs(self, req: rq.StatFsReq, ctx: Context) -> Reply:
        return StatFsOut(self.fs.statfs(ctx, req.header.nodeid))

    # --- extended attributes ------------------------------------------------------------------
    def do_setxattr(self, req: rq.SetXattr, ctx: Context) -> Reply:
        self.fs.setxattr(ctx, req.header.nodeid, req.name, req.value, req.flags)
        return Empty()

    def do_getxattr(self, req: rq.GetXattr, ctx: Context) -> Reply:
        return _sized(self.fs.getxattr(ctx, req.header.nodeid, req.name), req.size)

    def do_listxattr(self, req: rq.ListXattr, ctx: Context) -> Reply:
        names = self.fs.listxattr(ctx, req.header.nodeid)
        return _sized(b"".join(n + b"\0" for n in names), req.size)

    def do_removexattr(self, req: rq.RemoveXattr, ctx: Context) -> Reply:
        self.fs.removexattr(ctx, req.header.nodeid, req.name)
        return Empty()

    # --- files ------------------------------------------------------------------------------------
    def do_open(self, req: rq.Open, ctx: Context) -> Reply:
        return OpenOut(self.fs.open(ctx, req.header.nodeid, req.flags))

    def do_create(self, req: rq.Create, ctx: Context) -> Reply:
        entry, opened = self.fs.create(ctx, req.header.nodeid, req.name, req.mode, req.umask,
                                       req.flags)
        self.counts.add(entry.ino)
        return CreateOut(entry, opened)

    def do_tmpfile(self, req: rq.TmpFile, ctx: Context) -> Reply:
        raise FsError(errno.EOPNOTSUPP)

    def do_read(self, req: rq.Read, ctx: Context) -> Reply:
        data = self.fs.read(ctx, req.header.nodeid, req.fh, req.offset, req.size)
        return Data(data[: req.size] if len(data) > req.size else data)

    def do_write(self, req: rq.Write, ctx: Context) -> Reply:
        return WriteOut(self.fs.write(ctx, req.header.nodeid, req.fh, req.offset, req.data,
                                      req.write_flags))

    def do_flush(self, req: rq.Flush, ctx: Context) -> Reply:
        self.fs.flush(ctx, req.header.nodeid, req.fh, req.lock_owner)
        return Empty()

    def do_release(self, req: rq.Release, ctx: Context) -> Reply:
        self.fs.release(ctx, req.header.nodeid, req.fh, req.flags)
        return Empty()

    def do_fsync(self, req: rq.Fsync, ctx: Context) -> Reply:
        self.fs.fsync(ctx, req.header.nodeid, req.fh, bool(req.fsync_flags & abi.FSYNC_FDATASYNC))
        return Empty()

    def do_fallocate(self, req: rq.Fallocate, ctx: Context) -> Reply:
        self.fs.fallocate(ctx, req.header.nodeid, req.fh, req.offset, req.length, req.mode)
        return Empty()

    def do_lseek(self, req: rq.Lseek, ctx: Context) -> Reply:
        return LseekOut(self.fs.lseek(ctx, req.header.nodeid, req.fh, req.offset, req.whence))

    def do_copy_file_range(self, req: rq.CopyFileRange, ctx: Context) -> Reply:
        n = self.fs.copy_file_range(ctx, req.header.nodeid, req.fh_in, req.off_in, req.nodeid_out,
                                    req.fh_out, req.off_out, req.length, req.flags)
        return WriteOut(n)

    def do_getlk(self, req: rq.GetLk, ctx: Context) -> Reply:
        lock = Lock(req.start, req.end, req.type, req.pid)
        return LkOut(self.fs.getlk(ctx, req.header.nodeid, req.fh, req.owner, lock))

    def do_setlk(self, req: rq.SetLk, ctx: Context, sleep: bool = False) -> Reply:
        lock = Lock(req.start, req.end, req.type, req.pid)
        self.fs.setlk(ctx, req.header.nodeid, req.fh, req.owner, lock, sleep,
                      bool(req.lk_flags & abi.LK_FLOCK))
        return Empty()

    def do_setlkw(self, req: rq.SetLkW, ctx: Context) -> Reply:
        return self.do_setlk(req, ctx, sleep=True)

    def do_bmap(self, req: rq.Bmap, ctx: Context) -> Reply:
        return BmapOut(self.fs.bmap(ctx, req.header.nodeid, req.block, req.blocksize))

    def do_ioctl(self, req: rq.Ioctl, ctx: Context) -> Reply:
        result, data = self.fs.ioctl(ctx, req.header.nodeid, req.fh, req.cmd, req.arg, req.data,
                                     req.out_size)
        return IoctlOut(result, data[: req.out_size])

    def do_poll(self, req: rq.Poll, ctx: Context) -> Reply:
        return PollOut(self.fs.poll(ctx, req.header.nodeid, req.fh, req.events))

    # --- directories ----------------------------------------------------------------------------
    def do_opendir(self, req: rq.OpenDir, ctx: Context) -> Reply:
        return OpenOut(self.fs.opendir(ctx, req.header.nodeid, req.flags))

    def do_readdir(self, req: rq.ReadDir, ctx: Context) -> Reply:
        records = self.fs.readdir(ctx, req.header.nodeid, req.fh, req.offset, False)
        data, _ = pack_dirents(records, req.size, plus=False)
        return Data(data)

    def do_readdirplus(self, req: rq.ReadDirPlus, ctx: Context) -> Reply:
        records = self.fs.readdir(ctx, req.header.nodeid, req.fh, req.offset, True)
        data, packed = pack_dirents(records, req.size, plus=True)
        counted = tuple(r.entry.ino for r in packed
                        if r.entry is not None and r.entry.ino and r.name not in (b".", b".."))
        for ino in counted:
            self.counts.add(ino)
        return DirData(data, counted)

    def do_releasedir(self, req: rq.ReleaseDir, ctx: Context) -> Reply:
        self.fs.releasedir(ctx, req.header.nodeid, req.fh)
        return Empty()

    def do_fsyncdir(self, req: rq.FsyncDir, ctx: Context) -> Reply:
        self.fs.fsyncdir(ctx, req.header.nodeid, req.fh, bool(req.fsync_flags & abi.FSYNC_FDATASYNC))
        return Empty()

    def do_syncfs(self, req: rq.SyncFs, ctx: Context) -> Reply:
        self.fs.syncfs(ctx, req.header.nodeid)
        return Empty()


class DirData(Data):
    """A READDIRPLUS buffer, with the nodes it handed to the kernel."""

    __slots__ = ("counted",)

    def __init__(self, data: bytes, counted: tuple[int, ...]):
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "counted", counted)


def _sized(value: bytes, size: int) -> Reply:
    """getxattr/listxattr: size 0 asks only for the length; a short buffer is ERANGE."""
    if size == 0:
        return XattrSize(len(value))
    if len(value) > size:
        raise FsError(errno.ERANGE)
    return Data(value)
