"""RemoteFileSystem: the FileSystem the FUSE layer mounts, answered by a bridgefs server.

Every method is one round trip through the session (reads and writes above the server's I/O
size are split), and readdir fetches many records with attributes per round trip.  Node ids are
the session's (server handles, see session.py); Attr.ino is the host's st_ino.

What it keeps is only what a round trip needs: the session, listings between READDIRs
(listings.py), writes on their way (writes.py: while files are opened, FLUSH comes at close and
writes are answered once queued; every other call waits for them), and releases sent in batches
(releases.py).  Caches that spare round trips live in the layers in front of it (caching.py).

Without those layers, caching is the safe kind: entries and attributes live
``entry_timeout``/``attr_timeout`` seconds (1 s by default), and an open keeps the page cache
only when size, mtime and ctime are what this client saw at its previous open of the file
(close-to-open consistency); any write through this client forgets that stamp.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterable
from typing import Any

from bridgefs.client.cache_policy import CachePolicy
from bridgefs.client.convert import Owner, attr_of, records_of, statfs_of
from bridgefs.client.dirbuf import Record
from bridgefs.client.facts import NO_FACTS, ReplyFacts
from bridgefs.client.listings import Listings
from bridgefs.client.node_writes import NodeWrites
from bridgefs.client.releases import ReleaseQueue
from bridgefs.client.session import CALL_TIMEOUT, EPOCH_SHIFT, ServerSession
from bridgefs.client.walk_ahead import Listed, WalkAhead
from bridgefs.client.writes import WriteBehind
from bridgefs.fuse.filesystem import (
    TIME_NOW,
    Attr,
    AttrReply,
    Context,
    DirEntry,
    Entry,
    FileSystem,
    FsError,
    Opened,
    SetAttr,
    StatFs,
)
from bridgefs.rpc import pb

log = logging.getLogger("bridgefs.client")

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC
# FUSE_WRITE_CACHE: the kernel writes back its own dirty pages (mmap, writeback cache); it does
# so asynchronously already, and records the answer's error for fsync itself.
_WRITE_CACHE = 1 << 0
LISTDIR_BATCH = 4096
# Records of subdirectories one listing brings along while caches are long: a walk of a tree
# costs a round trip per this many records instead of one per directory.
SUBTREE_RECORDS = 2048


def caller_of(ctx: Context, mode: int = 0) -> pb.Caller:
    """The caller of a request that makes a node or changes an owner or mode.  The FUSE header
    has no supplementary groups; they are read from /proc only for the one decision the server
    makes with them (a non-directory made with S_ISGID, which a setgid directory's group
    decides), and then from the calling thread's status."""
    caller = pb.Caller(uid=ctx.uid, gid=ctx.gid)
    if mode & stat.S_ISGID and not stat.S_ISDIR(mode) and ctx.pid:
        caller.groups.extend(_groups_of(ctx.pid))
    return caller


def _groups_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return [int(g) for g in line.split()[1:]]
    except (OSError, ValueError):
        pass  # gone already: without its groups the server keeps no S_ISGID it cannot vouch for
    return []


class RemoteFileSystem(FileSystem):
    """A share of a bridgefs server as a FileSystem.

    ``address``: ``tcp:HOST:PORT``, ``unix:PATH`` or ``vsock:CID:PORT``.  ``uid``/``gid`` present
    every file as owned by that id (chown to anything else is refused with EPERM).
    ``read_only`` refuses every mutation locally with EROFS (a read-only share does so anyway).
    ``timeout`` bounds every call; ``slow_timeout`` bounds fsync, syncfs, fallocate and
    copy_file_range.  ``opens=False`` is the kernel's no-open mode: OPEN, OPENDIR and FLUSH
    answer ENOSYS, so the kernel opens nothing and addresses I/O and listings by node (for a
    client whose caches events keep right).  ``policy`` holds the timeouts the answers carry.
    The constructor connects and handshakes (raising FsError on failure)."""

    def __init__(
        self,
        address: str,
        share: str,
        *,
        entry_timeout: float = 1.0,
        attr_timeout: float = 1.0,
        negative_timeout: float = 0.0,
        uid: int | None = None,
        gid: int | None = None,
        read_only: bool = False,
        timeout: float = CALL_TIMEOUT,
        slow_timeout: float = 300.0,
        connect_timeout: float = 10.0,
        client_name: str | None = None,
        readdir_batch: int = 512,
        opens: bool = True,
        policy: CachePolicy | None = None,
    ):
        self.policy = policy or CachePolicy(entry_timeout, attr_timeout, negative_timeout)
        self.owner = Owner(uid, gid)
        self.opens = opens
        self.slow_timeout = slow_timeout
        self.facts: ReplyFacts = NO_FACTS
        queue = WriteBehind()
        self.session = ServerSession(
            address,
            share,
            queue,
            timeout=timeout,
            connect_timeout=connect_timeout,
            client_name=client_name,
        )
        self.session.session_lost = self._session_lost
        self._stub = self.session.stub
        self.writes = NodeWrites(self.session, queue)
        self.read_only = read_only or self.session.read_only
        self.max_io = self.session.max_io
        self.max_nodes = self.session.max_nodes
        self.readdir_batch = min(readdir_batch, self.session.max_readdir_entries or readdir_batch)
        self.root_attr = self._attr(self.session.root_attr)
        counts = self.session.counts
        self.listings = Listings(
            lambda: self.policy.mode.attr_timeout,
            lambda: self.policy.mode.negative_timeout,
            counts.received,
            counts.give_back,
        )
        self.ahead = WalkAhead(self._list_ahead, self.listings.has_whole, SUBTREE_RECORDS)
        self._stamps: dict[int, tuple[int, int, int]] = {}
        self._releases = (
            ReleaseQueue(self._send_releases)
            if "release-batch" in self.session.capabilities
            else None
        )

    # --- plumbing -----------------------------------------------------------------------------
    def _call(self, rpc: Any, request: Any, timeout: float | None = None) -> Any:
        return self.session.call(rpc, request, timeout)

    def _h(self, ino: int) -> int:
        return self.session.handle(ino)

    def _f(self, fh: int) -> int:
        return self.session.file(fh)

    def _live(self, fh: int) -> bool:
        """Whether open file ``fh`` is of the current session (a lost one's files are gone)."""
        return fh >> EPOCH_SHIFT == self.session.epoch

    def _n(self, handle: int) -> int:
        return self.session.node(handle)

    def _attr(self, a: Any) -> Attr:
        return attr_of(a, self.owner)

    def _entry(self, e: Any) -> Entry:
        """An Entry for the FUSE layer; counts the reference it carries."""
        self.session.counts.received(e.handle)
        mode = self.policy.mode
        return Entry(
            ino=self._n(e.handle),
            attr=self._attr(e.attr),
            entry_timeout=mode.entry_timeout,
            attr_timeout=mode.attr_timeout,
        )

    def _writable(self) -> None:
        if self.read_only:
            raise FsError(errno.EROFS)

    @property
    def entry_timeout(self) -> float:
        return self.policy.mode.entry_timeout

    @property
    def attr_timeout(self) -> float:
        return self.policy.mode.attr_timeout

    @property
    def negative_timeout(self) -> float:
        return self.policy.mode.negative_timeout

    # --- life cycle -------------------------------------------------------------------------------
    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Round trips made to the server, per call (for `bridgefs stats`)."""
        return self.session.rpc_stats.snapshot(reset)

    def resume(self) -> bool:
        """Open a new session after the server lost ours (it restarted).  False if it is not
        back yet.  Open files of the lost session stay lost (ESTALE)."""
        return self.session.resume(self._session_lost)

    def _session_lost(self) -> None:
        self._stamps.clear()
        self.listings.reset()
        self.ahead.reset()
        if self._releases is not None:
            self._releases.reset()

    def forget(self, ino: int, nlookup: int | None = None) -> None:
        """The kernel forgot ``ino``.  ``nlookup``, when the caller knows it, is the number of
        references the kernel dropped; otherwise every reference this client received is
        returned."""
        self._stamps.pop(ino, None)
        self.listings.forget(ino)
        self.session.forget(ino, nlookup)

    def give_back(self, ino: int) -> None:
        """A reference to ``ino`` that an answer carried but that never reached the kernel."""
        self.session.give_back(ino)

    def flush_forgets(self) -> None:
        """Send queued forgets now (normally they go out in the background within ~20 ms)."""
        self.session.counts.flush()

    def destroy(self) -> None:
        self.close()

    def close(self) -> None:
        self.ahead.close()
        self.session.close(self._stop_senders)

    def _stop_senders(self) -> None:
        if self._releases is not None:
            self._releases.close()  # queued releases are moot: Goodbye closes every file
        self.writes.close()

    def __enter__(self) -> RemoteFileSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def server_lookup(self, parent: int, name: bytes) -> Entry:
        """The node ``name`` names on the server now (ENOENT when none), with a reference."""
        entry = RemoteFileSystem.lookup(self, Context(), parent, name)
        if not entry.ino:
            raise FsError(errno.ENOENT)
        return entry

    def read_files(
        self, inos: list[int], max_file_size: int, max_total: int
    ) -> list[tuple[int, Attr, bytes] | None]:
        """The contents of several files in one round trip: (ino, attributes, data) each, None
        for a file the server could not read or left out."""
        reply = self._call(
            self._stub.ReadFiles,
            pb.ReadFilesRequest(
                handles=[self._h(i) for i in inos], max_file_size=max_file_size, max_total=max_total
            ),
        )
        out: list[tuple[int, Attr, bytes] | None] = [None] * len(inos)
        for i, (ino, content) in enumerate(zip(inos, reply.files)):
            if not content.errno:
                out[i] = (ino, self._attr(content.attr), content.data)
        return out

    # --- names ----------------------------------------------------------------------------------
    def lookup(self, ctx: Context, parent: int, name: bytes) -> Entry:
        try:
            reply = self._call(self._stub.Lookup, pb.NameRequest(parent=self._h(parent), name=name))
        except FsError as exc:
            if exc.errno == errno.ENOENT and self.negative_timeout > 0:
                return Entry(ino=0, attr=None, entry_timeout=self.negative_timeout)
            raise
        return self._entry(reply.entry)

    # A change of a directory's names answers with the directory's attributes after it: the
    # kernel drops them at every such change and would ask for them before the next lookup.
    # A change of a directory's names answers with the directory's attributes after it: the
    # kernel drops them at every such change and would ask for them before the next lookup.
    def _in_dir(self, parent: int, rpc: Any, request: Any, other_dir: int | None = None) -> Any:
        """``rpc``, a change of the names in ``parent`` (and in ``other_dir``, a rename's
        destination)."""
        dirs = (parent,) if other_dir in (None, parent) else (parent, other_dir)
        token = self.facts.dir_changing(parent)
        attr = None
        try:
            reply = self._call(rpc, request)
            if reply.HasField("parent"):
                attr = self._attr(reply.parent)
            return reply
        except FsError:
            for d in dirs:
                self.facts.names_refused(d)
            raise
        finally:
            # Once the server has made the change (or not), a listing kept for the directory,
            # even one fetched while the change was on its way, tells the old names.
            for d in dirs:
                self.listings.drop(d)
            self.facts.dir_changed(parent, token, attr)

    def mknod(
        self, ctx: Context, parent: int, name: bytes, mode: int, rdev: int, umask: int
    ) -> Entry:
        self._writable()
        return self._entry(
            self._in_dir(
                parent,
                self._stub.MkNod,
                pb.MkNodRequest(
                    parent=self._h(parent),
                    name=name,
                    mode=mode,
                    rdev=rdev,
                    umask=umask,
                    caller=caller_of(ctx, mode),
                ),
            ).entry
        )

    def mkdir(self, ctx: Context, parent: int, name: bytes, mode: int, umask: int) -> Entry:
        self._writable()
        return self._entry(
            self._in_dir(
                parent,
                self._stub.MkDir,
                pb.MkDirRequest(
                    parent=self._h(parent),
                    name=name,
                    mode=mode,
                    umask=umask,
                    caller=caller_of(ctx),
                ),
            ).entry
        )

    def symlink(self, ctx: Context, parent: int, name: bytes, target: bytes) -> Entry:
        self._writable()
        return self._entry(
            self._in_dir(
                parent,
                self._stub.Symlink,
                pb.SymlinkRequest(
                    parent=self._h(parent), name=name, target=target, caller=caller_of(ctx)
                ),
            ).entry
        )

    def link(self, ctx: Context, ino: int, new_parent: int, new_name: bytes) -> Entry:
        self._writable()
        return self._entry(
            self._in_dir(
                new_parent,
                self._stub.Link,
                pb.LinkRequest(
                    handle=self._h(ino), new_parent=self._h(new_parent), new_name=new_name
                ),
            ).entry
        )

    def unlink(self, ctx: Context, parent: int, name: bytes) -> None:
        self._writable()
        self._in_dir(parent, self._stub.Unlink, pb.NameRequest(parent=self._h(parent), name=name))

    def rmdir(self, ctx: Context, parent: int, name: bytes) -> None:
        self._writable()
        self._in_dir(parent, self._stub.RmDir, pb.NameRequest(parent=self._h(parent), name=name))

    def rename(
        self, ctx: Context, parent: int, name: bytes, new_parent: int, new_name: bytes, flags: int
    ) -> None:
        self._writable()
        self._in_dir(
            parent,
            self._stub.Rename,
            pb.RenameRequest(
                parent=self._h(parent),
                name=name,
                new_parent=self._h(new_parent),
                new_name=new_name,
                flags=flags,
            ),
            new_parent,
        )

    # --- attributes -----------------------------------------------------------------------------
    def getattr(self, ctx: Context, ino: int, fh: int | None) -> AttrReply:
        request = pb.GetAttrRequest(handle=self._h(ino))
        if fh and self._live(fh):  # 0: no open file (no-open mode); a lost one: the node
            request.fh = self._f(fh)
        reply = self._call(self._stub.GetAttr, request)
        return AttrReply(self._attr(reply.attr), self.attr_timeout)

    def _owner(self, value: int | None, override: int | None) -> int | None:
        if value is None or override is None:
            return value
        if value != override:
            raise FsError(errno.EPERM)  # every file shows as owned by the override
        return None

    def setattr(self, ctx: Context, ino: int, changes: SetAttr, fh: int | None) -> AttrReply:
        self._writable()
        request = pb.SetAttrRequest(
            handle=self._h(ino), kill_suidgid=changes.kill_suidgid, caller=caller_of(ctx)
        )
        if fh:
            request.fh = self._f(fh)
        if changes.mode is not None:
            request.mode = changes.mode
        uid = self._owner(changes.uid, self.owner.uid)
        gid = self._owner(changes.gid, self.owner.gid)
        if uid is not None:
            request.uid = uid
        if gid is not None:
            request.gid = gid
        if changes.size is not None:
            request.size = changes.size
        for name in ("atime_ns", "mtime_ns"):
            value = getattr(changes, name)
            if value == TIME_NOW:
                setattr(request, name[0] + "time_now", True)
            elif value is not None:
                setattr(request, name, value)
        self._stamps.pop(ino, None)
        reply = self._call(self._stub.SetAttr, request)
        return AttrReply(self._attr(reply.attr), self.attr_timeout)

    def readlink(self, ctx: Context, ino: int) -> bytes:
        target: bytes = self._call(self._stub.ReadLink, pb.NodeRequest(handle=self._h(ino))).target
        return target

    def access(self, ctx: Context, ino: int, mask: int) -> None:
        if mask & os.W_OK and self.read_only:
            raise FsError(errno.EROFS)
        self._call(self._stub.Access, pb.AccessRequest(handle=self._h(ino), mask=mask))

    def statfs(self, ctx: Context, ino: int) -> StatFs:
        return statfs_of(self._call(self._stub.StatFs, pb.NodeRequest(handle=self._h(ino))))

    def syncfs(self, ctx: Context, ino: int) -> None:
        self._call(self._stub.SyncFs, pb.NodeRequest(handle=self._h(ino)), self.slow_timeout)

    # --- extended attributes ------------------------------------------------------------------
    def setxattr(self, ctx: Context, ino: int, name: bytes, value: bytes, flags: int) -> None:
        self._writable()
        self._call(
            self._stub.SetXattr,
            pb.SetXattrRequest(handle=self._h(ino), name=name, value=value, flags=flags),
        )

    def getxattr(self, ctx: Context, ino: int, name: bytes) -> bytes:
        value: bytes = self._call(
            self._stub.GetXattr, pb.XattrRequest(handle=self._h(ino), name=name)
        ).value
        return value

    def listxattr(self, ctx: Context, ino: int) -> list[bytes]:
        return list(self._call(self._stub.ListXattr, pb.NodeRequest(handle=self._h(ino))).names)

    def removexattr(self, ctx: Context, ino: int, name: bytes) -> None:
        self._writable()
        self._call(self._stub.RemoveXattr, pb.XattrRequest(handle=self._h(ino), name=name))

    # --- files ------------------------------------------------------------------------------------
    def open(self, ctx: Context, ino: int, flags: int) -> Opened:
        if not self.opens:
            raise FsError(errno.ENOSYS)  # no-open mode: the kernel stops sending OPEN
        if flags & _WRITE_FLAGS:
            self._writable()
        reply = self._call(self._stub.Open, pb.OpenRequest(handle=self._h(ino), flags=flags))
        stamp = (reply.attr.size, reply.attr.mtime_ns, reply.attr.ctime_ns)
        keep = self.policy.mode.trust_pages or self._stamps.get(ino) == stamp
        self._stamps[ino] = stamp
        return Opened(fh=self.session.opened(reply.fh), keep_cache=keep)

    def create(
        self, ctx: Context, parent: int, name: bytes, mode: int, umask: int, flags: int
    ) -> tuple[Entry, Opened]:
        self._writable()
        request = pb.CreateRequest(
            parent=self._h(parent),
            name=name,
            mode=mode,
            umask=umask,
            flags=flags,
            no_handle=not self.opens,
            caller=caller_of(ctx, stat.S_IFREG | mode),
        )
        try:
            reply = self._in_dir(parent, self._stub.Create, request)
        except FsError as exc:
            # Out of open files on the server while closed ones wait in the queue: send them.
            if exc.errno not in (errno.EMFILE, errno.ENFILE) or self._releases is None:
                raise
            self._releases.flush()
            reply = self._in_dir(parent, self._stub.Create, request)
        ino = self._n(reply.entry.handle)
        self._stamps.pop(ino, None)
        if reply.created:
            self.facts.file_made(ino)
        return self._entry(reply.entry), Opened(fh=self.session.opened(reply.fh))

    def read(self, ctx: Context, ino: int, fh: int, offset: int, size: int) -> bytes:
        parts, fh = [], self._f(fh)
        while size > 0:
            n = min(size, self.max_io)
            data = self._call(
                self._stub.Read, pb.ReadRequest(handle=self._h(ino), fh=fh, offset=offset, size=n)
            ).data
            parts.append(data)
            if len(data) < n:
                break
            offset += n
            size -= n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def write(self, ctx: Context, ino: int, fh: int, offset: int, data: bytes, flags: int) -> int:
        """Queued and answered at once while files are opened (a failure is raised by the next
        write, flush or fsync of ``fh``); sent and waited for when no FLUSH will come (no-open
        mode), and for the kernel's own dirty pages (it tracks their errors itself)."""
        self._writable()
        self._stamps.pop(ino, None)
        queued = self.opens and not flags & _WRITE_CACHE
        return self.writes.write(ino, fh, offset, data, flags, queued)

    def flush(self, ctx: Context, ino: int, fh: int, lock_owner: int) -> None:
        if not self.opens:
            # Writes are never held back then and locks are the VM kernel's own, so a close
            # has nothing to tell the server: ENOSYS makes the kernel stop sending FLUSH.
            raise FsError(errno.ENOSYS)
        err = self.writes.owed_error(ino, fh, any_file=False)
        try:  # (a file of a lost session: ESTALE, what became of its writes is not known)
            self._call(
                self._stub.Flush,
                pb.FileRequest(handle=self._h(ino), fh=self._f(fh), lock_owner=lock_owner),
            )
        except FsError:
            if not err:
                raise
        if err:
            raise FsError(err)  # close() reports a write that was answered before it failed

    def release(self, ctx: Context, ino: int, fh: int, flags: int) -> None:
        if not fh:
            # In no-open mode the kernel sends RELEASE for nothing at all, so files made then
            # are closed on the server at once (fh 0): a RELEASE of one made before the kernel
            # entered that mode is of fh 0 too.
            return
        if not self._live(fh):
            return  # opened in a session the server lost, and closed with it
        fh = self._f(fh)
        if self._releases is not None:
            self._releases.add(self._h(ino), fh)
        else:
            self._call(self._stub.Release, pb.FileRequest(handle=self._h(ino), fh=fh))

    def _send_releases(self, batch: list[tuple[int, int]]) -> None:
        (handle, fh), rest = batch[0], batch[1:]
        self._call(
            self._stub.Release, pb.FileRequest(handle=handle, fh=fh, more_fhs=[f for _, f in rest])
        )

    def fsync(self, ctx: Context, ino: int, fh: int, datasync: bool) -> None:
        err = self.writes.owed_error(ino, fh, any_file=True)
        try:  # (as flush: never 0 for a file of a lost session)
            self._call(
                self._stub.Fsync,
                pb.FsyncRequest(handle=self._h(ino), fh=self._f(fh), datasync=datasync),
                self.slow_timeout,
            )
        except FsError:
            if not err:
                raise
        if err:
            raise FsError(err)

    def fallocate(
        self, ctx: Context, ino: int, fh: int, offset: int, length: int, mode: int
    ) -> None:
        self._writable()
        self._stamps.pop(ino, None)
        self._call(
            self._stub.Fallocate,
            pb.FallocateRequest(
                handle=self._h(ino), fh=self._f(fh), offset=offset, length=length, mode=mode
            ),
            self.slow_timeout,
        )

    def lseek(self, ctx: Context, ino: int, fh: int, offset: int, whence: int) -> int:
        return int(
            self._call(
                self._stub.Lseek,
                pb.LseekRequest(handle=self._h(ino), fh=self._f(fh), offset=offset, whence=whence),
            ).offset
        )

    def copy_file_range(
        self,
        ctx: Context,
        ino_in: int,
        fh_in: int,
        off_in: int,
        ino_out: int,
        fh_out: int,
        off_out: int,
        length: int,
        flags: int,
    ) -> int:
        self._writable()
        self._stamps.pop(ino_out, None)
        return int(
            self._call(
                self._stub.CopyFileRange,
                pb.CopyFileRangeRequest(
                    handle_in=self._h(ino_in),
                    fh_in=self._f(fh_in),
                    offset_in=off_in,
                    handle_out=self._h(ino_out),
                    fh_out=self._f(fh_out),
                    offset_out=off_out,
                    length=length,
                    flags=flags,
                ),
                self.slow_timeout,
            ).copied
        )

    # --- directories ----------------------------------------------------------------------------
    def opendir(self, ctx: Context, ino: int, flags: int) -> Opened:
        if not self.opens:
            raise FsError(errno.ENOSYS)  # no-open mode: the kernel stops sending OPENDIR
        fh = self.session.opened(
            self._call(self._stub.OpenDir, pb.NodeRequest(handle=self._h(ino))).fh
        )
        self.listings.opened(fh, self.attr_timeout)
        cached = self.policy.mode.cache_listings
        return Opened(fh=fh, cache_dir=cached, keep_cache=cached)

    def readdir(
        self, ctx: Context, ino: int, fh: int, offset: int, plus: bool
    ) -> Iterable[DirEntry]:
        if fh:
            buf = self.listings.of_handle(fh)
            if buf is None:
                raise FsError(errno.EBADF)
        else:  # the kernel lists without opening (no-opendir): one ListDir per directory
            if not offset:
                self.ahead.asked(ino, self.session.timeout)
            buf = self.listings.of_node(ino)
        return buf.iterate(
            offset,
            plus,
            lambda cookie: self._fetch(ino, fh, cookie, plus),
            self.session.counts.received,
            self.listings.give_back,
        )

    def _fetch(self, ino: int, fh: int, cookie: int, plus: bool) -> tuple[list[Record], bool]:
        if fh:
            reply = self._call(
                self._stub.ReadDir,
                pb.ReadDirRequest(
                    handle=self._h(ino),
                    fh=self._f(fh),
                    offset=cookie,
                    plus=plus,
                    max_entries=self.readdir_batch,
                ),
            )
        else:
            long = self.policy.mode.cache_listings
            subtree = SUBTREE_RECORDS if plus and not cookie and long else 0
            records, eof, kept = self._list(ino, cookie, plus, subtree)
            if subtree and eof:
                self.ahead.arrived(ino, [(ino, records), *kept])
            return records, eof
        return self._records(reply.entries, plus, cookie), reply.eof

    def _list(
        self, ino: int, cookie: int, plus: bool, subtree: int, whole: bool = False
    ) -> tuple[list[Record], bool, Listed]:
        """ListDir: (records, eof, listings below, kept as fetched ahead; with ``whole``, the
        records too when they are all of the listing)."""
        generation = self.listings.generation
        reply = self._call(
            self._stub.ListDir,
            pb.ReadDirRequest(
                handle=self._h(ino),
                offset=cookie,
                plus=plus,
                max_entries=LISTDIR_BATCH,
                subtree_records=subtree,
            ),
        )
        records = self._records(reply.entries, plus, cookie)
        subs = [(self._n(sub.handle), self._records(sub.entries, True)) for sub in reply.below]
        if whole:
            if reply.eof:
                subs.insert(0, (ino, records))
            else:
                self.listings.give_back([r.handle for r in records if r.handle])
        kept = self.listings.keep_ahead(subs, generation) if subs else []
        for sub_ino, sub_records in kept:
            self.facts.listed_ahead(sub_ino, [r.entry for r in sub_records])
        return records, reply.eof, kept

    def _list_ahead(self, ino: int) -> Listed:
        if not self.policy.mode.cache_listings:  # the events stopped since the walk began
            return ()
        return self._list(ino, 0, True, SUBTREE_RECORDS, whole=True)[2]

    def _records(self, entries: Any, plus: bool, cookie: int = 0) -> list[Record]:
        mode = self.policy.mode
        return records_of(
            entries, plus, cookie, self._n, self.owner, mode.entry_timeout, mode.attr_timeout
        )

    def releasedir(self, ctx: Context, ino: int, fh: int) -> None:
        self.listings.closed(fh)
        if self._live(fh):  # (one of a lost session was closed with it)
            self._call(self._stub.ReleaseDir, pb.FileRequest(handle=self._h(ino), fh=self._f(fh)))

    def fsyncdir(self, ctx: Context, ino: int, fh: int, datasync: bool) -> None:
        self._call(
            self._stub.FsyncDir,
            pb.FsyncRequest(handle=self._h(ino), fh=self._f(fh), datasync=datasync),
            self.slow_timeout,
        )
