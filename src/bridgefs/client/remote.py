"""RemoteFileSystem: the FileSystem the FUSE layer mounts, answered by a bridgefs server.

Node ids are server handles (the share root is 1), so there is no id translation; Attr.ino is
the host's st_ino.  Every method is one round trip (reads and writes above the server's I/O size
are split), and readdir fetches many records with attributes per round trip.  While files are
opened (FLUSH comes at close), writes are answered once queued and sent in the background
(writes.py); every other call waits for the writes queued before it.

Caching is the safe kind: entries and attributes live ``entry_timeout``/``attr_timeout`` seconds
(1 s by default), and an open keeps the page cache only when size, mtime and ctime are what this
client saw at its previous open of the file (close-to-open consistency); any write through this
client forgets that stamp.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import socket
import threading
import time

import grpc

from bridgefs.client.cache_policy import CacheMode, short_mode
from bridgefs.client.channel import errno_of, open_channel
from bridgefs.client.dirbuf import DirBuffer, Record
from bridgefs.client.lookups import LookupCounts
from bridgefs.client.releases import ReleaseQueue
from bridgefs.client.rpcstats import RpcStats, method_name
from bridgefs.client.writes import PendingWrite, WriteBehind
from bridgefs.fuse.filesystem import (
    TIME_NOW, Attr, AttrReply, Context, DirEntry, Entry, FileSystem, FsError, Opened, SetAttr,
    StatFs,
)
from bridgefs.rpc import MAX_IO_SIZE, PROTOCOL_VERSION, ROOT_HANDLE, SESSION_KEY, pb, pb_grpc

log = logging.getLogger("bridgefs.client")

REQUIRED_CAPABILITIES = ("readdirplus", "forget-batch", "node-io")
EPOCH_SHIFT = 40
HANDLE_MASK = (1 << EPOCH_SHIFT) - 1
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC
# FUSE_WRITE_CACHE: the kernel writes back its own dirty pages (mmap, writeback cache); it does
# so asynchronously already, and records the answer's error for fsync itself.
_WRITE_CACHE = 1 << 0
LISTDIR_BATCH = 4096
# Records of subdirectories one listing brings along while caches are long: a walk of a tree
# costs a round trip per this many records instead of one per directory.
SUBTREE_RECORDS = 2048


class RemoteFileSystem(FileSystem):
    """A share of a bridgefs server as a FileSystem.

    ``address``: ``tcp:HOST:PORT``, ``unix:PATH`` or ``vsock:CID:PORT``.  ``uid``/``gid`` present
    every file as owned by that id (chown to anything else is refused with EPERM).
    ``read_only`` refuses every mutation locally with EROFS (a read-only share does so anyway).
    ``timeout`` bounds every call; ``slow_timeout`` bounds fsync, syncfs, fallocate and
    copy_file_range.  The constructor connects and handshakes (raising FsError on failure)."""

    # Whether files are opened here, so that the kernel sends FLUSH on every close.  Writes are
    # answered before the server has them only then: a close waits for them there and reports
    # their failure.  A subclass answering OPEN and FLUSH with ENOSYS (no-open mode) sets False.
    opens = True

    def __init__(self, address: str, share: str, *, entry_timeout: float = 1.0,
                 attr_timeout: float = 1.0, negative_timeout: float = 0.0, uid: int | None = None,
                 gid: int | None = None, read_only: bool = False, timeout: float = 30.0,
                 slow_timeout: float = 300.0, connect_timeout: float = 10.0,
                 client_name: str | None = None, readdir_batch: int = 512):
        self.address = address
        self.share = share
        # The safe timeouts; the change stream swaps in long ones while it flows.
        self.short_mode = short_mode(entry_timeout, attr_timeout, negative_timeout)
        self.mode: CacheMode = self.short_mode
        self.uid = uid
        self.gid = gid
        self.timeout = timeout
        self.slow_timeout = slow_timeout
        self.readdir_batch = readdir_batch
        self.rpc_stats = RpcStats()
        self.epoch = 0
        self._rebound: dict[int, int] = {}
        self._resume_lock = threading.Lock()
        self._conn = open_channel(address)
        self._stub = pb_grpc.FilesStub(self._conn.channel)
        self._metadata: tuple = ()
        self._stamps: dict[int, tuple[int, int, int]] = {}
        self._dirs: dict[int, DirBuffer] = {}
        self._node_dirs: dict[int, DirBuffer] = {}  # listings asked for without a handle
        self._listing_lock = threading.Lock()
        self._listing_gen = 0  # moves on at every drop: a listing fetched across one is not kept
        self._closed = False
        self._close_lock = threading.Lock()
        self._client_name = client_name or f"{socket.gethostname()} pid {os.getpid()}"
        try:
            hello = self._handshake(self._client_name, connect_timeout)
        except BaseException:
            self._conn.close()
            raise
        self.session = hello.session
        self.capabilities = tuple(hello.capabilities)
        self.read_only = read_only or hello.read_only
        self.max_io = min(hello.max_io_size or MAX_IO_SIZE, MAX_IO_SIZE)
        self.readdir_batch = min(readdir_batch, hello.max_readdir_entries or readdir_batch)
        self.root_attr = self._attr(hello.root.attr)
        self.max_nodes = hello.max_nodes  # 0: the server did not say
        self._metadata = ((SESSION_KEY, hello.session),)
        self._writes = WriteBehind()
        # Calls that need not wait for queued writes: nothing they read or change is something
        # a write changes (the security.capability a host write drops was removed through the
        # mount before the kernel sent that write).
        self._unordered = frozenset((self._stub.Write, self._stub.GetXattr, self._stub.ListXattr,
                                     self._stub.Ping))
        self._counts = LookupCounts(self._send_forget, self._send_ping,
                                    ping_interval=max(0.05, (hello.idle_timeout or 600.0) / 3))
        self._counts.start()
        self._releases = ReleaseQueue(self._send_releases) \
            if "release-batch" in self.capabilities else None

    # --- plumbing -----------------------------------------------------------------------------
    def _handshake(self, client_name: str, connect_timeout: float):
        request = pb.HandshakeRequest(protocol_version=PROTOCOL_VERSION, share=self.share,
                                      required_capabilities=REQUIRED_CAPABILITIES,
                                      client_name=client_name)
        try:
            reply = self._stub.Handshake(request, timeout=connect_timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            # No answer within connect_timeout means nobody is there (ENOTCONN), not an I/O error.
            err = errno_of(exc)
            raise FsError(errno.ENOTCONN if err == errno.EIO else err,
                          f"cannot reach bridgefs server at {self.address}: "
                          f"{exc.details() if hasattr(exc, 'details') else exc}") from None
        if reply.errno:
            why = {errno.ENOENT: f"no share named {self.share!r}",
                   errno.EPROTONOSUPPORT: f"server speaks protocol {reply.protocol_version} with "
                                          f"{list(reply.capabilities)}, client needs "
                                          f"{PROTOCOL_VERSION} with {list(REQUIRED_CAPABILITIES)}"}
            raise FsError(reply.errno, why.get(reply.errno, os.strerror(reply.errno)))
        return reply

    # --- node ids across a server restart ------------------------------------------------------
    # Node ids are the server's handles, until the server forgets the session (it restarted):
    # then the client handshakes again, and ids of later sessions carry the session's number
    # ("epoch") above EPOCH_SHIFT, so they never collide with ids the kernel still holds.  An id
    # from an earlier session is bound again, on first use, by looking its name up anew.
    def _h(self, ino: int) -> int:
        """The server handle of node id ``ino``."""
        if ino == ROOT_HANDLE or ino >> EPOCH_SHIFT == self.epoch:
            return ino & HANDLE_MASK
        handle = self._rebound.get(ino)
        if handle is None:
            handle = self._rebind(ino)
        return handle

    def _n(self, handle: int) -> int:
        """The node id of server handle ``handle``."""
        return handle if handle == ROOT_HANDLE else (self.epoch << EPOCH_SHIFT) | handle

    def name_of(self, ino: int) -> tuple[int, bytes] | None:
        """(parent node id, name) of a node, for rebinding after a restart; see WatchedFileSystem."""
        return None

    def _rebind(self, ino: int) -> int:
        where = self.name_of(ino)
        if where is None:
            raise FsError(errno.ESTALE)
        parent, name = where
        reply = self._call(self._stub.Lookup, pb.NameRequest(parent=self._h(parent), name=name))
        self._counts.received(reply.entry.handle)
        self._rebound[ino] = reply.entry.handle
        return reply.entry.handle

    def resume(self) -> bool:
        """Open a new session after the server lost ours (it restarted).  False if it is not
        back yet.  Open files of the lost session stay lost (EBADF)."""
        with self._resume_lock:
            try:
                self._call(self._stub.Ping, pb.Empty(), timeout=min(self.timeout, 5.0))
                return True  # the session is fine
            except FsError as exc:
                if exc.errno != errno.ESTALE:
                    return False
            try:
                hello = self._handshake(self._client_name, min(self.timeout, 5.0))
            except FsError:
                return False
            self.session = hello.session
            self._metadata = ((SESSION_KEY, hello.session),)
            self.epoch += 1
            self._rebound.clear()
            self._stamps.clear()
            self._dirs.clear()
            self._node_dirs.clear()
            self._counts.reset()
            if self._releases is not None:
                self._releases.reset()
            log.warning("the server lost this client's session: attached again (session %d)",
                        self.epoch)
            return True

    def _call(self, rpc, request, timeout: float | None = None):
        if self._writes.busy and rpc not in self._unordered:
            self._writes.drain()  # whatever this asks or changes comes after the writes answered
        started = time.perf_counter_ns()
        try:
            reply = rpc(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            self.rpc_stats.record(method_name(rpc), time.perf_counter_ns() - started, True)
            raise FsError(errno_of(exc)) from None
        self.rpc_stats.record(method_name(rpc), time.perf_counter_ns() - started, bool(reply.errno))
        self._counts.touch()
        if reply.errno:
            raise FsError(reply.errno)
        return reply

    def stats(self, reset: bool = False) -> dict:
        """Round trips made to the server, per call (for `bridgefs stats`)."""
        return self.rpc_stats.snapshot(reset)

    def _send_forget(self, items: list[tuple[int, int]]) -> None:
        request = pb.ForgetRequest(items=[pb.ForgetItem(handle=h, count=n) for h, n in items])
        self._call(self._stub.Forget, request)

    def _send_ping(self) -> None:
        self._call(self._stub.Ping, pb.Empty())

    @property
    def entry_timeout(self) -> float:
        return self.mode.entry_timeout

    @property
    def attr_timeout(self) -> float:
        return self.mode.attr_timeout

    @property
    def negative_timeout(self) -> float:
        return self.mode.negative_timeout

    def _writable(self) -> None:
        if self.read_only:
            raise FsError(errno.EROFS)

    def _attr(self, a) -> Attr:
        return Attr(ino=a.ino, mode=a.mode, nlink=a.nlink,
                    uid=a.uid if self.uid is None else self.uid,
                    gid=a.gid if self.gid is None else self.gid,
                    rdev=a.rdev, size=a.size, blocks=a.blocks, atime_ns=a.atime_ns,
                    mtime_ns=a.mtime_ns, ctime_ns=a.ctime_ns, blksize=a.blksize or 4096)

    def _entry(self, e) -> Entry:
        """An Entry for the FUSE layer; counts the reference it carries."""
        self._counts.received(e.handle)
        return Entry(ino=self._n(e.handle), attr=self._attr(e.attr), entry_timeout=self.entry_timeout,
                     attr_timeout=self.attr_timeout)

    # --- life cycle -------------------------------------------------------------------------------
    def forget(self, ino: int, nlookup: int | None = None) -> None:
        """The kernel forgot ``ino``.  ``nlookup``, when the caller knows it, is the number of
        references the kernel dropped; otherwise every reference this client received is
        returned."""
        self._stamps.pop(ino, None)
        with self._listing_lock:
            listing = self._node_dirs.pop(ino, None)
        if listing is not None:
            self._give_back(listing.clear())
        if ino >> EPOCH_SHIFT == self.epoch:
            self._counts.forget(ino & HANDLE_MASK, nlookup)
        else:  # a node from before the session was resumed: only its rebinding is held
            handle = self._rebound.pop(ino, None)
            if handle is not None:
                self._counts.give_back(handle)

    def flush_forgets(self) -> None:
        """Send queued forgets now (normally they go out in the background within ~20 ms)."""
        self._counts.flush()

    def destroy(self) -> None:
        self.close()

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._counts.close()  # queued forgets are moot: Goodbye releases every handle
            if self._releases is not None:
                self._releases.close()  # so are queued releases: Goodbye closes every file
            self._writes.close()
            self._call(self._stub.Goodbye, pb.Empty(), timeout=min(self.timeout, 5.0))
        except FsError as exc:
            log.debug("goodbye failed: %s", exc)
        finally:
            self._conn.close()

    def __enter__(self) -> "RemoteFileSystem":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
    def _dir_changing(self, parent: int):
        """A change of ``parent``'s names begins; returns what _dir_changed takes back."""
        return None

    def _dir_changed(self, parent: int, token, attr: Attr | None) -> None:
        """It ended; ``attr``: the directory's attributes right after it, None if unknown."""

    def _names_refused(self, parent: int) -> None:
        """A change of ``parent``'s names failed (EEXIST, ENOENT, a lost connection...): the
        host's names there may differ from what this client thought."""

    def _in_dir(self, parent: int, rpc, request, other_dir: int | None = None):
        """``rpc``, a change of the names in ``parent`` (and in ``other_dir``, a rename's
        destination)."""
        dirs = (parent,) if other_dir in (None, parent) else (parent, other_dir)
        token = self._dir_changing(parent)
        attr = None
        try:
            reply = self._call(rpc, request)
            if reply.HasField("parent"):
                attr = self._attr(reply.parent)
            return reply
        except FsError:
            for d in dirs:
                self._names_refused(d)
            raise
        finally:
            # Once the server has made the change (or not), a listing kept for the directory,
            # even one fetched while the change was on its way, tells the old names.
            for d in dirs:
                self.drop_listing(d)
            self._dir_changed(parent, token, attr)

    def mknod(self, ctx, parent, name, mode, rdev, umask) -> Entry:
        self._writable()
        return self._entry(self._in_dir(parent, self._stub.MkNod, pb.MkNodRequest(
            parent=self._h(parent), name=name, mode=mode, rdev=rdev, umask=umask)).entry)

    def mkdir(self, ctx, parent, name, mode, umask) -> Entry:
        self._writable()
        return self._entry(self._in_dir(parent, self._stub.MkDir, pb.MkDirRequest(
            parent=self._h(parent), name=name, mode=mode, umask=umask)).entry)

    def symlink(self, ctx, parent, name, target) -> Entry:
        self._writable()
        return self._entry(self._in_dir(parent, self._stub.Symlink, pb.SymlinkRequest(
            parent=self._h(parent), name=name, target=target)).entry)

    def link(self, ctx, ino, new_parent, new_name) -> Entry:
        self._writable()
        return self._entry(self._in_dir(new_parent, self._stub.Link, pb.LinkRequest(
            handle=self._h(ino), new_parent=self._h(new_parent), new_name=new_name)).entry)

    def unlink(self, ctx, parent, name) -> None:
        self._writable()
        self._in_dir(parent, self._stub.Unlink, pb.NameRequest(parent=self._h(parent), name=name))

    def rmdir(self, ctx, parent, name) -> None:
        self._writable()
        self._in_dir(parent, self._stub.RmDir, pb.NameRequest(parent=self._h(parent), name=name))

    def rename(self, ctx, parent, name, new_parent, new_name, flags) -> None:
        self._writable()
        self._in_dir(parent, self._stub.Rename, pb.RenameRequest(
            parent=self._h(parent), name=name, new_parent=self._h(new_parent), new_name=new_name,
            flags=flags), new_parent)

    # --- attributes -----------------------------------------------------------------------------
    def getattr(self, ctx, ino, fh) -> AttrReply:
        request = pb.GetAttrRequest(handle=self._h(ino))
        if fh:  # 0: no open file (the kernel opens nothing in no-open mode)
            request.fh = fh
        reply = self._call(self._stub.GetAttr, request)
        return AttrReply(self._attr(reply.attr), self.attr_timeout)

    def _owner(self, value: int | None, override: int | None) -> int | None:
        if value is None or override is None:
            return value
        if value != override:
            raise FsError(errno.EPERM)  # every file shows as owned by the override
        return None

    def setattr(self, ctx, ino, changes: SetAttr, fh) -> AttrReply:
        self._writable()
        request = pb.SetAttrRequest(handle=self._h(ino), kill_suidgid=changes.kill_suidgid)
        if fh:
            request.fh = fh
        if changes.mode is not None:
            request.mode = changes.mode
        uid, gid = self._owner(changes.uid, self.uid), self._owner(changes.gid, self.gid)
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

    def readlink(self, ctx, ino) -> bytes:
        return self._call(self._stub.ReadLink, pb.NodeRequest(handle=self._h(ino))).target

    def access(self, ctx, ino, mask) -> None:
        if mask & os.W_OK and self.read_only:
            raise FsError(errno.EROFS)
        self._call(self._stub.Access, pb.AccessRequest(handle=self._h(ino), mask=mask))

    def statfs(self, ctx, ino) -> StatFs:
        r = self._call(self._stub.StatFs, pb.NodeRequest(handle=self._h(ino)))
        return StatFs(blocks=r.blocks, bfree=r.bfree, bavail=r.bavail, files=r.files,
                      ffree=r.ffree, bsize=r.bsize, namelen=r.namelen, frsize=r.frsize)

    def syncfs(self, ctx, ino) -> None:
        self._call(self._stub.SyncFs, pb.NodeRequest(handle=self._h(ino)), self.slow_timeout)

    # --- extended attributes ------------------------------------------------------------------
    def setxattr(self, ctx, ino, name, value, flags) -> None:
        self._writable()
        self._call(self._stub.SetXattr, pb.SetXattrRequest(handle=self._h(ino), name=name, value=value,
                                                           flags=flags))

    def getxattr(self, ctx, ino, name) -> bytes:
        return self._call(self._stub.GetXattr, pb.XattrRequest(handle=self._h(ino), name=name)).value

    def listxattr(self, ctx, ino) -> list[bytes]:
        return list(self._call(self._stub.ListXattr, pb.NodeRequest(handle=self._h(ino))).names)

    def removexattr(self, ctx, ino, name) -> None:
        self._writable()
        self._call(self._stub.RemoveXattr, pb.XattrRequest(handle=self._h(ino), name=name))

    # --- files ------------------------------------------------------------------------------------
    def open(self, ctx, ino, flags) -> Opened:
        if flags & _WRITE_FLAGS:
            self._writable()
        reply = self._call(self._stub.Open, pb.OpenRequest(handle=self._h(ino), flags=flags))
        stamp = (reply.attr.size, reply.attr.mtime_ns, reply.attr.ctime_ns)
        keep = self.mode.trust_pages or self._stamps.get(ino) == stamp
        self._stamps[ino] = stamp
        return Opened(fh=reply.fh, keep_cache=keep)

    def create(self, ctx, parent, name, mode, umask, flags) -> tuple[Entry, Opened]:
        self._writable()
        request = pb.CreateRequest(parent=self._h(parent), name=name, mode=mode, umask=umask,
                                   flags=flags, no_handle=not self.opens)
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
            self._made_file(ino)
        return self._entry(reply.entry), Opened(fh=reply.fh)

    def _made_file(self, ino: int) -> None:
        """``ino`` is a file this client's create just made (it existed nowhere before)."""

    def read(self, ctx, ino, fh, offset, size) -> bytes:
        parts = []
        while size > 0:
            n = min(size, self.max_io)
            data = self._call(self._stub.Read, pb.ReadRequest(handle=self._h(ino), fh=fh, offset=offset,
                                                              size=n)).data
            parts.append(data)
            if len(data) < n:
                break
            offset += n
            size -= n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def write(self, ctx, ino, fh, offset, data, flags) -> int:
        """Queued and answered at once (see writes.py): a failure is raised by the next write,
        flush or fsync of ``fh``.  Writes wait for the server's answer when no FLUSH will come
        (no-open mode), and for the kernel's own dirty pages (it tracks their errors itself)."""
        self._writable()
        self._stamps.pop(ino, None)
        if not isinstance(data, bytes):
            data = bytes(data)  # it may wait in a queue: a buffer the caller reuses would change
        handle = self._h(ino)
        if flags & _WRITE_CACHE or not self.opens:
            done = 0
            while done < len(data):
                chunk = data[done:done + self.max_io] if len(data) > self.max_io else data
                written = self._send_write(self.epoch, handle, fh, offset + done, chunk, flags)
                done += written
                if written < len(chunk):
                    break
            return done
        node = (self.epoch, handle)
        for start in range(0, len(data), self.max_io):
            chunk = data[start:start + self.max_io] if len(data) > self.max_io else data
            self._writes.submit(PendingWrite(
                node, fh, offset + start, chunk,
                functools.partial(self._send_write, self.epoch, handle, fh, offset + start, chunk,
                                  flags)))
        return len(data)

    def _send_write(self, epoch: int, handle: int, fh: int, offset: int, data: bytes,
                    flags: int) -> int:
        if epoch != self.epoch:
            raise FsError(errno.EBADF)  # an open file of a session the server lost
        return self._call(self._stub.Write, pb.WriteRequest(
            handle=handle, fh=fh, offset=offset, data=data, flags=flags)).written

    def _deferred_error(self, ino: int, fh: int, any_file: bool) -> int | None:
        """After a drain: the error of a queued write not reported to ``fh`` yet (see
        WriteBehind.take_error)."""
        self._writes.drain()
        return self._writes.take_error((self.epoch, self._h(ino)), fh, any_file)

    def flush(self, ctx, ino, fh, lock_owner) -> None:
        err = self._deferred_error(ino, fh, any_file=False)
        try:
            self._call(self._stub.Flush, pb.FileRequest(handle=self._h(ino), fh=fh,
                                                        lock_owner=lock_owner))
        except FsError:
            if not err:
                raise
        if err:
            raise FsError(err)  # close() reports a write that was answered before it failed

    def release(self, ctx, ino, fh, flags) -> None:
        if self._releases is not None:
            self._releases.add(self._h(ino), fh)
        else:
            self._call(self._stub.Release, pb.FileRequest(handle=self._h(ino), fh=fh))

    def _send_releases(self, batch: list[tuple[int, int]]) -> None:
        (handle, fh), rest = batch[0], batch[1:]
        self._call(self._stub.Release, pb.FileRequest(handle=handle, fh=fh,
                                                      more_fhs=[f for _, f in rest]))

    def fsync(self, ctx, ino, fh, datasync) -> None:
        err = self._deferred_error(ino, fh, any_file=True)
        try:
            self._call(self._stub.Fsync, pb.FsyncRequest(handle=self._h(ino), fh=fh,
                                                         datasync=datasync), self.slow_timeout)
        except FsError:
            if not err:
                raise
        if err:
            raise FsError(err)

    def fallocate(self, ctx, ino, fh, offset, length, mode) -> None:
        self._writable()
        self._stamps.pop(ino, None)
        self._call(self._stub.Fallocate, pb.FallocateRequest(
            handle=self._h(ino), fh=fh, offset=offset, length=length, mode=mode), self.slow_timeout)

    def lseek(self, ctx, ino, fh, offset, whence) -> int:
        return self._call(self._stub.Lseek, pb.LseekRequest(handle=self._h(ino), fh=fh, offset=offset,
                                                             whence=whence)).offset

    def copy_file_range(self, ctx, ino_in, fh_in, off_in, ino_out, fh_out, off_out, length,
                        flags) -> int:
        self._writable()
        self._stamps.pop(ino_out, None)
        return self._call(self._stub.CopyFileRange, pb.CopyFileRangeRequest(
            handle_in=self._h(ino_in), fh_in=fh_in, offset_in=off_in, handle_out=self._h(ino_out), fh_out=fh_out,
            offset_out=off_out, length=length, flags=flags), self.slow_timeout).copied

    # --- directories ----------------------------------------------------------------------------
    def opendir(self, ctx, ino, flags) -> Opened:
        fh = self._call(self._stub.OpenDir, pb.NodeRequest(handle=self._h(ino))).fh
        self._dirs[fh] = DirBuffer(plus_ttl=self.attr_timeout)
        cached = self.mode.cache_listings
        return Opened(fh=fh, cache_dir=cached, keep_cache=cached)

    def readdir(self, ctx, ino, fh, offset, plus):
        if fh:
            buf = self._dirs.get(fh)
            if buf is None:
                raise FsError(errno.EBADF)
        else:  # the kernel lists without opening (no-opendir): one ListDir per directory
            buf = self._node_listing(ino)
        return buf.iterate(offset, plus, lambda cookie: self._fetch(ino, fh, cookie, plus),
                           self._counts.received, self._give_back)

    def _node_listing(self, ino: int) -> DirBuffer:
        buf = self._node_dirs.get(ino)
        if buf is None:
            # What is kept is trusted as long as attributes are: in long mode, until an event
            # or a change through this client drops it (drop_listing).
            buf = self._node_dirs.setdefault(ino, DirBuffer(lambda: self.mode.attr_timeout))
        return buf

    def lookup_listed(self, parent: int, name: bytes) -> Entry | None:
        """A lookup answered from a listing kept for ``parent`` (one fetched ahead, mostly):
        the entry; an absent entry (ino 0) when the listing is whole and lacks the name; None
        when it cannot say."""
        buf = self._node_dirs.get(parent)
        if buf is None or name in (b".", b"..") or len(name) > 255:
            return None  # (a name too long is the server's to refuse)
        record, whole = buf.take_entry(name)
        if record is not None:
            self._counts.received(record.handle)
            return record.entry.entry
        if whole:
            return Entry(ino=0, attr=None, entry_timeout=self.negative_timeout)
        return None

    def drop_listing(self, ino: int) -> None:
        """Directory ``ino`` changed: what is kept of its listing may not start a new one."""
        with self._listing_lock:
            self._listing_gen += 1
            buf = self._node_dirs.get(ino)
        if buf is not None:
            self._give_back(buf.drop_start())

    def drop_listings(self) -> None:
        with self._listing_lock:
            self._listing_gen += 1
            bufs = list(self._node_dirs.values())
        for buf in bufs:
            self._give_back(buf.drop_start())

    def _fetch(self, ino: int, fh: int, cookie: int, plus: bool) -> tuple[list[Record], bool]:
        if fh:
            reply = self._call(self._stub.ReadDir, pb.ReadDirRequest(
                handle=self._h(ino), fh=fh, offset=cookie, plus=plus,
                max_entries=self.readdir_batch))
        else:
            subtree = SUBTREE_RECORDS if plus and not cookie and self.mode.cache_listings else 0
            gen = self._listing_gen
            reply = self._call(self._stub.ListDir, pb.ReadDirRequest(
                handle=self._h(ino), offset=cookie, plus=plus, max_entries=LISTDIR_BATCH,
                subtree_records=subtree))
            if reply.below:
                self._keep_below(reply.below, gen)
        records = self._records(reply.entries, plus, cookie)
        return records, reply.eof

    def _records(self, entries, plus: bool, cookie: int = 0) -> list[Record]:
        records = []
        for d in entries:
            entry = None
            handle = 0
            if plus and d.HasField("entry"):
                handle = d.entry.handle
                entry = Entry(ino=self._n(handle), attr=self._attr(d.entry.attr),
                              entry_timeout=self.entry_timeout, attr_timeout=self.attr_timeout)
            records.append(Record(cookie, DirEntry(d.name, d.ino, d.dtype, d.offset, entry), handle))
            cookie = d.offset
        return records

    def _keep_below(self, below, gen: int) -> None:
        """Listings of subdirectories that came with a listing: kept as if their own first
        READDIRPLUS had fetched them, unless something changed while they were on the way."""
        now = time.monotonic()
        subs = [(self._n(sub.handle), self._records(sub.entries, True)) for sub in below]
        dropped = []
        with self._listing_lock:
            for ino, records in subs:
                if gen != self._listing_gen or not records:
                    dropped.extend(r.handle for r in records if r.handle)
                    continue
                buf = self._node_dirs.get(ino)
                if buf is None:
                    buf = self._node_dirs[ino] = DirBuffer(lambda: self.mode.attr_timeout)
                dropped.extend(buf.keep(records, True, True, records[-1].entry.offset, now,
                                        ahead=True))
                self._listed_ahead(ino, records)
        self._give_back(dropped)

    def _listed_ahead(self, ino: int, records: list[Record]) -> None:
        """The listing of directory ``ino`` arrived ahead of the kernel's asking for it."""

    def _give_back(self, handles: list[int]) -> None:
        for handle in handles:
            self._counts.give_back(handle)

    def releasedir(self, ctx, ino, fh) -> None:
        buf = self._dirs.pop(fh, None)
        if buf is not None:
            self._give_back(buf.clear())
        self._call(self._stub.ReleaseDir, pb.FileRequest(handle=self._h(ino), fh=fh))

    def fsyncdir(self, ctx, ino, fh, datasync) -> None:
        self._call(self._stub.FsyncDir, pb.FsyncRequest(handle=self._h(ino), fh=fh, datasync=datasync),
                   self.slow_timeout)
