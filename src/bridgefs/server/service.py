"""The gRPC servicer: unpack a request, call the session's LocalFs, pack the reply.

No path or permission logic lives here.  Every failure becomes the reply's ``errno``: OSError
carries the host's errno, a confinement or read-only refusal is logged once, and anything else is
logged with its traceback and answered EIO so one bad request never takes the server down.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

from bridgefs.credentials import HOLD_KEY
from bridgefs.rpc import (
    CAPABILITIES,
    MAX_IO_SIZE,
    PROTOCOL_VERSION,
    ROOT_HANDLE,
    SESSION_KEY,
    pb,
    pb_grpc,
)
from bridgefs.server import ownership, ranges, testhook
from bridgefs.server.auth import client_identity
from bridgefs.server.confine import Refused
from bridgefs.server.localfs import MAX_READDIR, Entry, LocalFs, Record
from bridgefs.server.sessions import Session, SessionRegistry
from bridgefs.server.shares import Share
from bridgefs.server.watcher import WatchHub, stream

log = logging.getLogger("bridgefs.server")

R = TypeVar("R")


class _ParentReply(Protocol):
    """A reply that carries the attributes of the directory whose names changed."""

    @property
    def parent(self) -> pb.Attr: ...


WithParent = TypeVar("WithParent", bound=_ParentReply)


class _WithCaller(Protocol):
    """A request that makes a node or changes an owner or mode."""

    @property
    def caller(self) -> pb.Caller: ...
    def HasField(self, field_name: str) -> bool: ...  # noqa: N802 (protobuf's name)


class Context(Protocol):
    """What the servicer uses of grpc.ServicerContext (grpc ships no annotations)."""

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]]: ...
    def peer(self) -> str: ...
    def add_callback(self, callback: Callable[[], object]) -> bool: ...
    def is_active(self) -> bool: ...


def attr_of(st: os.stat_result) -> pb.Attr:
    return pb.Attr(
        ino=st.st_ino,
        mode=st.st_mode,
        nlink=st.st_nlink,
        uid=st.st_uid,
        gid=st.st_gid,
        rdev=st.st_rdev,
        size=st.st_size,
        blocks=st.st_blocks,
        atime_ns=st.st_atime_ns,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        blksize=st.st_blksize,
    )


def caller_of(request: _WithCaller) -> ownership.Caller | None:
    """The guest ids a request was made with; None from a client that sends none."""
    if not request.HasField("caller"):
        return None
    c = request.caller
    return ownership.Caller(c.uid, c.gid, tuple(c.groups))


def entry_of(handle: int, st: os.stat_result) -> pb.Entry:
    return pb.Entry(handle=handle, attr=attr_of(st))


def _entry_reply(result: Entry) -> pb.EntryReply:
    return pb.EntryReply(entry=entry_of(*result))


def _changed_dir(fs: LocalFs, parent: int, reply: WithParent) -> WithParent:
    """``reply`` with the attributes of directory ``parent`` after a change of its names: the
    client's kernel drops them at every such change and would ask for them right away."""
    try:
        reply.parent.CopyFrom(attr_of(fs.getattr(parent, None)))
    except OSError:
        pass  # the change is done; the client asks for them itself
    return reply


_OK = pb.Status()


def node_capacity(max_nodes: int) -> int:
    """How many nodes a session can really hold: each is an O_PATH descriptor, so the process's
    descriptor limit (less room for open files and sockets) bounds it too."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return max_nodes
    return max(1, min(max_nodes, soft - 4096))


class FilesService(pb_grpc.FilesServicer):
    def __init__(
        self, shares: dict[str, Share], registry: SessionRegistry, watches: WatchHub | None = None
    ):
        self.shares = shares
        self.registry = registry
        self.watches = watches if watches is not None else WatchHub()
        self.owners = ownership.Config()  # serve() puts the configured one in

    # --- plumbing ---------------------------------------------------------------------------------
    def _session(self, context: Context) -> Session | None:
        for key, value in context.invocation_metadata():
            if key == SESSION_KEY and isinstance(value, str):
                return self.registry.get(value)
        return None

    def _run(
        self,
        context: Context,
        reply_cls: Callable[..., R],
        op: str,
        fn: Callable[[LocalFs], R | None],
    ) -> R:
        """``fn``'s reply, or ``reply_cls`` carrying the errno it failed with; a ``fn`` that
        returns nothing succeeded with an empty reply."""
        session = self._session(context)
        if session is None:
            return reply_cls(errno=errno.ESTALE)
        try:
            session.enter()
        except OSError as exc:
            log.warning("refused %s for session %s: %s", op, session.short, exc.strerror)
            return reply_cls(errno=exc.errno)
        try:
            reply = fn(session.fs)
            return reply_cls() if reply is None else reply
        except Refused as exc:
            log.warning(
                "refused %s for session %s (%s): %s",
                op,
                session.short,
                session.client_name or session.peer,
                exc.reason,
            )
            return reply_cls(errno=exc.errno)
        except OSError as exc:
            if exc.errno in (errno.ENFILE, errno.EMFILE):
                log.warning("refused %s for session %s: %s", op, session.short, exc.strerror)
            return reply_cls(errno=exc.errno or errno.EIO)
        except OverflowError as exc:
            # A number no check at the boundary caught: still the caller's mistake, not ours.
            log.warning("refused %s for session %s: %s", op, session.short, exc)
            return reply_cls(errno=errno.EOVERFLOW)
        except Exception:
            log.exception("%s failed for session %s", op, session.short)
            return reply_cls(errno=errno.EIO)
        finally:
            session.exit()

    # --- session ----------------------------------------------------------------------------------
    def Handshake(self, request: pb.HandshakeRequest, context: Context) -> pb.HandshakeReply:
        peer = context.peer()
        if request.protocol_version != PROTOCOL_VERSION:
            log.warning(
                "refused handshake from %s: protocol version %d, server speaks %d",
                peer,
                request.protocol_version,
                PROTOCOL_VERSION,
            )
            return pb.HandshakeReply(
                errno=errno.EPROTONOSUPPORT,
                protocol_version=PROTOCOL_VERSION,
                capabilities=CAPABILITIES,
            )
        missing = set(request.required_capabilities) - set(CAPABILITIES)
        share = self.shares.get(request.share)
        err = errno.EPROTONOSUPPORT if missing else 0 if share else errno.ENOENT
        if err or share is None:
            log.warning(
                "refused handshake from %s (%s) for share %r: %s",
                peer,
                request.client_name,
                request.share,
                f"missing capabilities {sorted(missing)}" if missing else "no such share",
            )
            return pb.HandshakeReply(
                errno=err, protocol_version=PROTOCOL_VERSION, capabilities=CAPABILITIES
            )
        try:
            session = self.registry.create(
                share, peer, request.client_name, client_identity(context)
            )
            # Chosen per session, so each mount of a share whose filesystem refuses user xattrs
            # says so in the log.
            session.fs.owners = ownership.policy_for(
                self.owners, share.root_fd, share.read_only, share.name
            )
            root = session.fs.owners.view(share.root_fd, os.fstat(share.root_fd))
        except OSError as exc:
            log.warning("refused handshake from %s for share %r: %s", peer, share.name, exc)
            return pb.HandshakeReply(errno=exc.errno, protocol_version=PROTOCOL_VERSION)
        log.info(
            "session %s: client %r from %s attached share %s",
            session.short,
            request.client_name,
            peer,
            share,
        )
        return pb.HandshakeReply(
            protocol_version=PROTOCOL_VERSION,
            capabilities=CAPABILITIES,
            session=session.token,
            root=entry_of(ROOT_HANDLE, root),
            read_only=share.read_only,
            max_io_size=MAX_IO_SIZE,
            max_readdir_entries=MAX_READDIR,
            idle_timeout=self.registry.limits.idle_timeout,
            # The registry's limits were fitted to the descriptor limit: what it enforces.
            max_nodes=self.registry.limits.max_nodes,
            ownership=session.fs.owners.name,
        )

    def Ping(self, request: pb.Empty, context: Context) -> pb.Status:
        return self._run(context, pb.Status, "ping", lambda fs: _OK)

    def Goodbye(self, request: pb.Empty, context: Context) -> pb.Status:
        session = self._session(context)
        if session is None:
            return pb.Status(errno=errno.ESTALE)
        self.registry.drop(session.token)
        log.info("session %s: goodbye", session.short)
        return _OK

    def Forget(self, request: pb.ForgetRequest, context: Context) -> pb.Status:
        items = [(item.handle, item.count) for item in request.items]
        return self._run(context, pb.Status, "forget", lambda fs: fs.forget(items))

    def Watch(self, request: pb.WatchRequest, context: Context) -> Iterator[pb.Change]:
        # Not counted as a call in flight: a stream lasts as long as the session, and the
        # session is still reaped when its client stops pinging.
        session = self._session(context)
        if session is None or session.closed:
            yield pb.Change(errno=errno.ESTALE)
            return
        if any(key == HOLD_KEY for key, _ in context.invocation_metadata()):
            yield from self._hold(session, context)
            return
        try:
            sub = self.watches.subscribe(session)
        except OSError as exc:
            log.warning(
                "session %s: cannot watch share %s: %s", session.short, session.share.name, exc
            )
            yield pb.Change(errno=exc.errno or errno.EIO)
            return
        context.add_callback(sub.close)  # the client cancelled or the connection is gone
        yield from stream(self.watches, sub, context.is_active)

    def _hold(self, session: Session, context: Context) -> Iterator[pb.Change]:
        """The session's hold stream: nothing flows; once it ends and is not opened again
        within the grace period, so does the session (the reaper ends it)."""
        session.hold_opened()
        context.add_callback(session.hold_closed)
        while not session.ended.wait(1.0):
            if self.registry.stopping.is_set() or not context.is_active():
                break
        return
        yield  # a generator, as the stream's handler must be

    # --- names ------------------------------------------------------------------------------------
    def Lookup(self, r: pb.NameRequest, context: Context) -> pb.EntryReply:
        if testhook.ENABLED:
            broken = testhook.lookup(self._session(context), r.name)
            if broken is not None:
                return broken
        return self._run(
            context, pb.EntryReply, "lookup", lambda fs: _entry_reply(fs.lookup(r.parent, r.name))
        )

    def MkNod(self, r: pb.MkNodRequest, context: Context) -> pb.EntryReply:
        return self._run(
            context,
            pb.EntryReply,
            "mknod",
            lambda fs: _changed_dir(
                fs,
                r.parent,
                _entry_reply(fs.mknod(r.parent, r.name, r.mode, r.rdev, r.umask, caller_of(r))),
            ),
        )

    def MkDir(self, r: pb.MkDirRequest, context: Context) -> pb.EntryReply:
        return self._run(
            context,
            pb.EntryReply,
            "mkdir",
            lambda fs: _changed_dir(
                fs,
                r.parent,
                _entry_reply(fs.mkdir(r.parent, r.name, r.mode, r.umask, caller_of(r))),
            ),
        )

    def Symlink(self, r: pb.SymlinkRequest, context: Context) -> pb.EntryReply:
        return self._run(
            context,
            pb.EntryReply,
            "symlink",
            lambda fs: _changed_dir(
                fs, r.parent, _entry_reply(fs.symlink(r.parent, r.name, r.target, caller_of(r)))
            ),
        )

    def Link(self, r: pb.LinkRequest, context: Context) -> pb.EntryReply:
        return self._run(
            context,
            pb.EntryReply,
            "link",
            lambda fs: _changed_dir(
                fs, r.new_parent, _entry_reply(fs.link(r.handle, r.new_parent, r.new_name))
            ),
        )

    def Unlink(self, r: pb.NameRequest, context: Context) -> pb.Status:
        def do_unlink(fs: LocalFs) -> pb.Status:
            fs.unlink(r.parent, r.name)
            return _changed_dir(fs, r.parent, pb.Status())

        return self._run(context, pb.Status, "unlink", do_unlink)

    def RmDir(self, r: pb.NameRequest, context: Context) -> pb.Status:
        def do_rmdir(fs: LocalFs) -> pb.Status:
            fs.rmdir(r.parent, r.name)
            return _changed_dir(fs, r.parent, pb.Status())

        return self._run(context, pb.Status, "rmdir", do_rmdir)

    def Rename(self, r: pb.RenameRequest, context: Context) -> pb.Status:
        return self._run(
            context,
            pb.Status,
            "rename",
            lambda fs: fs.rename(r.parent, r.name, r.new_parent, r.new_name, r.flags),
        )

    # --- attributes -------------------------------------------------------------------------------
    def GetAttr(self, r: pb.GetAttrRequest, context: Context) -> pb.AttrReply:
        fh = r.fh if r.HasField("fh") else None
        return self._run(
            context,
            pb.AttrReply,
            "getattr",
            lambda fs: pb.AttrReply(attr=attr_of(fs.getattr(r.handle, fh))),
        )

    def SetAttr(self, r: pb.SetAttrRequest, context: Context) -> pb.AttrReply:
        h = r.HasField
        return self._run(
            context,
            pb.AttrReply,
            "setattr",
            lambda fs: pb.AttrReply(
                attr=attr_of(
                    fs.setattr(
                        r.handle,
                        r.fh if h("fh") else None,
                        mode=r.mode if h("mode") else None,
                        uid=r.uid if h("uid") else None,
                        gid=r.gid if h("gid") else None,
                        size=ranges.size(r.size) if h("size") else None,
                        atime_ns=r.atime_ns if h("atime_ns") else None,
                        mtime_ns=r.mtime_ns if h("mtime_ns") else None,
                        atime_now=r.atime_now,
                        mtime_now=r.mtime_now,
                        kill_suidgid=r.kill_suidgid,
                    )
                )
            ),
        )

    def ReadLink(self, r: pb.NodeRequest, context: Context) -> pb.ReadLinkReply:
        return self._run(
            context,
            pb.ReadLinkReply,
            "readlink",
            lambda fs: pb.ReadLinkReply(target=fs.readlink(r.handle)),
        )

    def Access(self, r: pb.AccessRequest, context: Context) -> pb.Status:
        return self._run(
            context,
            pb.Status,
            "access",
            lambda fs: fs.access(r.handle, ranges.mask(r.mask, ranges.ACCESS_BITS, "access")),
        )

    def StatFs(self, r: pb.NodeRequest, context: Context) -> pb.StatFsReply:
        def statfs(fs: LocalFs) -> pb.StatFsReply:
            st = fs.statfs()
            return pb.StatFsReply(
                blocks=st.f_blocks,
                bfree=st.f_bfree,
                bavail=st.f_bavail,
                files=st.f_files,
                ffree=st.f_ffree,
                bsize=st.f_bsize,
                namelen=st.f_namemax,
                frsize=st.f_frsize,
            )

        return self._run(context, pb.StatFsReply, "statfs", statfs)

    def SyncFs(self, r: pb.NodeRequest, context: Context) -> pb.Status:
        return self._run(context, pb.Status, "syncfs", lambda fs: fs.syncfs())

    # --- extended attributes ----------------------------------------------------------------------
    def SetXattr(self, r: pb.SetXattrRequest, context: Context) -> pb.Status:
        return self._run(
            context,
            pb.Status,
            "setxattr",
            lambda fs: fs.setxattr(
                r.handle, r.name, r.value, ranges.mask(r.flags, ranges.XATTR_BITS, "setxattr")
            ),
        )

    def GetXattr(self, r: pb.XattrRequest, context: Context) -> pb.GetXattrReply:
        return self._run(
            context,
            pb.GetXattrReply,
            "getxattr",
            lambda fs: pb.GetXattrReply(value=fs.getxattr(r.handle, r.name)),
        )

    def ListXattr(self, r: pb.NodeRequest, context: Context) -> pb.ListXattrReply:
        return self._run(
            context,
            pb.ListXattrReply,
            "listxattr",
            lambda fs: pb.ListXattrReply(names=fs.listxattr(r.handle)),
        )

    def RemoveXattr(self, r: pb.XattrRequest, context: Context) -> pb.Status:
        return self._run(
            context, pb.Status, "removexattr", lambda fs: fs.removexattr(r.handle, r.name)
        )

    # --- files ------------------------------------------------------------------------------------
    def Open(self, r: pb.OpenRequest, context: Context) -> pb.OpenReply:
        def do_open(fs: LocalFs) -> pb.OpenReply:
            fh, st = fs.open(r.handle, r.flags)
            return pb.OpenReply(fh=fh, attr=attr_of(st))

        return self._run(context, pb.OpenReply, "open", do_open)

    def Create(self, r: pb.CreateRequest, context: Context) -> pb.CreateReply:
        def do_create(fs: LocalFs) -> pb.CreateReply:
            handle, st, fh, created = fs.create(
                r.parent,
                r.name,
                r.mode,
                r.umask,
                r.flags,
                keep_open=not r.no_handle,
                caller=caller_of(r),
            )
            return _changed_dir(
                fs, r.parent, pb.CreateReply(entry=entry_of(handle, st), fh=fh, created=created)
            )

        return self._run(context, pb.CreateReply, "create", do_create)

    def Read(self, r: pb.ReadRequest, context: Context) -> pb.ReadReply:
        return self._run(
            context,
            pb.ReadReply,
            "read",
            lambda fs: pb.ReadReply(
                data=fs.read(r.fh, ranges.offset(r.offset), r.size)
                if r.fh
                else fs.read_node(r.handle, ranges.offset(r.offset), r.size)
            ),
        )

    def ReadFiles(self, r: pb.ReadFilesRequest, context: Context) -> pb.ReadFilesReply:
        def read_files(fs: LocalFs) -> pb.ReadFilesReply:
            reply = pb.ReadFilesReply()
            for handle, err, data, st in fs.read_files(r.handles, r.max_file_size, r.max_total):
                reply.files.append(
                    pb.FileContent(
                        handle=handle,
                        errno=err,
                        data=data,
                        attr=attr_of(st) if st is not None else None,
                    )
                )
            return reply

        return self._run(context, pb.ReadFilesReply, "read_files", read_files)

    def Write(self, r: pb.WriteRequest, context: Context) -> pb.WriteReply:
        return self._run(
            context,
            pb.WriteReply,
            "write",
            lambda fs: pb.WriteReply(
                written=fs.write(r.fh, ranges.offset(r.offset), r.data)
                if r.fh
                else fs.write_node(r.handle, ranges.offset(r.offset), r.data)
            ),
        )

    def Flush(self, r: pb.FileRequest, context: Context) -> pb.Status:
        return self._run(context, pb.Status, "flush", lambda fs: fs.flush(r.fh))

    def Release(self, r: pb.FileRequest, context: Context) -> pb.Status:
        def do_release(fs: LocalFs) -> pb.Status:
            failed: OSError | None = None
            for fh in (r.fh, *r.more_fhs):  # each one, whatever became of the others
                try:
                    fs.release(fh)
                except OSError as exc:
                    failed = failed or exc
            if failed is not None:
                raise failed
            return _OK

        return self._run(context, pb.Status, "release", do_release)

    def Fsync(self, r: pb.FsyncRequest, context: Context) -> pb.Status:
        return self._run(
            context, pb.Status, "fsync", lambda fs: fs.fsync(r.fh, r.datasync, handle=r.handle)
        )

    def Fallocate(self, r: pb.FallocateRequest, context: Context) -> pb.Status:
        return self._run(
            context,
            pb.Status,
            "fallocate",
            lambda fs: fs.fallocate(
                r.fh, *ranges.extent(r.offset, r.length), r.mode, handle=r.handle
            ),
        )

    def Lseek(self, r: pb.LseekRequest, context: Context) -> pb.LseekReply:
        return self._run(
            context,
            pb.LseekReply,
            "lseek",
            lambda fs: pb.LseekReply(
                offset=fs.lseek(r.fh, r.offset, ranges.whence(r.whence), handle=r.handle)
            ),
        )

    def CopyFileRange(self, r: pb.CopyFileRangeRequest, context: Context) -> pb.CopyFileRangeReply:
        return self._run(
            context,
            pb.CopyFileRangeReply,
            "copy_file_range",
            lambda fs: pb.CopyFileRangeReply(
                copied=fs.copy_file_range(
                    r.fh_in,
                    ranges.offset(r.offset_in, "offset_in"),
                    r.fh_out,
                    ranges.offset(r.offset_out, "offset_out"),
                    ranges.count(r.length),
                    r.flags,
                    handle_in=r.handle_in,
                    handle_out=r.handle_out,
                )
            ),
        )

    # --- directories ------------------------------------------------------------------------------
    def OpenDir(self, r: pb.NodeRequest, context: Context) -> pb.OpenReply:
        def do_opendir(fs: LocalFs) -> pb.OpenReply:
            fh, st = fs.opendir(r.handle)
            return pb.OpenReply(fh=fh, attr=attr_of(st))

        return self._run(context, pb.OpenReply, "opendir", do_opendir)

    def ReadDir(self, r: pb.ReadDirRequest, context: Context) -> pb.ReadDirReply:
        return self._run(
            context,
            pb.ReadDirReply,
            "readdir",
            lambda fs: _dir_reply(*fs.readdir(r.fh, r.offset, r.plus, r.max_entries)),
        )

    def ListDir(self, r: pb.ReadDirRequest, context: Context) -> pb.ReadDirReply:
        def do_listdir(fs: LocalFs) -> pb.ReadDirReply:
            if r.subtree_records and r.plus and not r.offset:
                records, eof, below = fs.listdir_tree(
                    r.handle, True, r.max_entries, r.subtree_records
                )
                reply = _dir_reply(records, eof)
                for handle, sub in below:
                    reply.below.append(
                        pb.SubListing(handle=handle, entries=_dir_reply(sub, True).entries)
                    )
                return reply
            return _dir_reply(*fs.listdir(r.handle, r.offset, r.plus, r.max_entries))

        return self._run(context, pb.ReadDirReply, "listdir", do_listdir)

    def ReleaseDir(self, r: pb.FileRequest, context: Context) -> pb.Status:
        return self._run(context, pb.Status, "releasedir", lambda fs: fs.releasedir(r.fh))

    def FsyncDir(self, r: pb.FsyncRequest, context: Context) -> pb.Status:
        return self._run(
            context,
            pb.Status,
            "fsyncdir",
            lambda fs: fs.fsync(r.fh, r.datasync, kind="dir", handle=r.handle),
        )


def _dir_reply(records: Sequence[Record], eof: bool) -> pb.ReadDirReply:
    reply = pb.ReadDirReply(eof=eof)
    add = reply.entries.add
    for cookie, name, ino, dtype, entry in records:
        record = add(name=name, ino=ino, dtype=dtype, offset=cookie)
        if entry is not None:
            # Filled in place: building an Entry and copying it in costs twice as much, and a
            # walk of a tree is mostly this.
            handle, st = entry
            record.entry.handle = handle
            _fill_attr(record.entry.attr, st)
    return reply


def _fill_attr(a: pb.Attr, st: os.stat_result) -> None:
    a.ino, a.mode, a.nlink, a.uid, a.gid = st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid
    a.rdev, a.size, a.blocks, a.blksize = st.st_rdev, st.st_size, st.st_blocks, st.st_blksize
    a.atime_ns, a.mtime_ns, a.ctime_ns = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
