"""A remote share that follows host-side changes: the RemoteFileSystem plus the name table that
finds what a change makes stale, the replay of changes for the VM's watchers, and the switch
between long-lived caches (stream flowing) and short ones (stream down)."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time

from bridgefs.client.cache_policy import long_mode
from bridgefs.client.changes import ChangeStream
from bridgefs.client.contents import (
    BATCH_BYTES, SMALL_FILE, FilesAhead, Pusher, is_small_file, same_version,
)
from bridgefs.client.names import NameTable
from bridgefs.client.own_dirs import OwnDirs
from bridgefs.client.remote import EPOCH_SHIFT, RemoteFileSystem
from bridgefs.client.replay import REPLAY_FH, Replayer, is_fake
from bridgefs.fuse import notify
from bridgefs.fuse.filesystem import ROOT_ID, Attr, AttrReply, Context, Entry, FsError, Opened
from bridgefs.rpc import pb

log = logging.getLogger("bridgefs.client")


class WatchedFileSystem(RemoteFileSystem):
    def __init__(self, *args, watch: bool = True, long_timeout: float = 3600.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.names = NameTable()
        self.watch = watch
        self.long_mode = long_mode(long_timeout)
        self.replayer: Replayer | None = None
        self.stream: ChangeStream | None = None
        self._send = None
        self._notify_lock = threading.Lock()
        # While host changes are followed, files and directories are never opened here: OPEN
        # and OPENDIR answer ENOSYS, which puts the kernel in no-open mode for the mount (no
        # OPEN, RELEASE, OPENDIR or RELEASEDIR; pages and listings kept across opens; I/O
        # addressed by node).  Events keep those caches right, and while they are down the
        # kernel still drops pages and listings whose mtime or size changed (AUTO_INVAL_DATA).
        self.opens = not watch
        # Attributes the kernel was last told, answered again without a round trip while
        # changes stream in (the kernel asks again after reads: it leaves atime to us).
        self.attrs: dict[int, Attr] = {}
        self.ahead = FilesAhead()
        self.own_dirs = OwnDirs()
        self.pusher: Pusher | None = None
        self._statfs = None
        self._no_caps: set[int] = set()
        # Directories whose names this client is changing: [changes in flight, changes begun].
        self._dir_busy: dict[int, list[int]] = {}
        self._dir_lock = threading.Lock()
        # Moves on at every invalidation: attributes fetched across one may be older than it
        # and are not remembered (the kernel, too, discards such an answer).
        self._inval_seq = 0

    # --- wiring to the session ------------------------------------------------------------------
    def attach(self, send_notification, mountpoint: str) -> None:
        """Called by the daemon before mounting: how to reach the kernel, and where the mount is."""
        self._send = send_notification
        self.replayer = Replayer(self, mountpoint)

    def mounted(self) -> None:
        """Called once the kernel's INIT is answered: start following changes."""
        if self.watch and self.stream is None:
            self.stream = ChangeStream(self)
            self.stream.start()
        if self.max_nodes:
            threading.Thread(target=self._trim_loop, name="bridgefs-trim", daemon=True).start()
        if self.watch and self.pusher is None:
            self.pusher = Pusher(self._push_pages)

    def _trim_loop(self) -> None:
        """Keep the nodes the kernel holds (each an open descriptor on the host) under the
        server's capacity: past 80% of it, the oldest quarter of the names is dropped from the
        kernel's cache, which then forgets the nodes nothing uses.  Runs on its own thread: a
        notification must never wait on a request that waits on it."""
        while not self._closed:
            time.sleep(0.5)
            if self._counts.held() > 0.8 * self.max_nodes:
                victims = self.names.oldest(max(1, self.max_nodes // 4))
                log.info("holding %d of %d nodes the server allows: dropping %d old names",
                         self._counts.held(), self.max_nodes, len(victims))
                for parent, name in victims:
                    self.invalidate_entry(parent, name)

    def open_watch(self):
        return self._stub.Watch(pb.WatchRequest(), metadata=self._metadata)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        if self.pusher is not None:
            self.pusher.close()
        super().close()

    def status(self) -> dict:
        stream = self.stream
        return {
            "events": "flowing" if stream and stream.flowing else ("off" if not self.watch else "down"),
            "cache_mode": self.mode.name,
            "entry_timeout": self.mode.entry_timeout,
            "attr_timeout": self.mode.attr_timeout,
            "known_names": len(self.names),
            **(stream.counts if stream else {}),
        }

    # --- cache control ----------------------------------------------------------------------------
    def set_long_caches(self, on: bool) -> None:
        # (Turned off, everything remembered is dropped by the invalidate_all that follows.)
        self.mode = self.long_mode if on else self.short_mode

    def invalidate_entry(self, parent: int, name: bytes) -> None:
        self.own_dirs.drop(parent)
        self.drop_listing(parent)
        self._notify(notify.inval_entry(parent, name))

    def invalidate_inode(self, ino: int, offset: int = 0) -> None:
        self._inval_seq += 1
        self._drop_node(ino)
        self.drop_listing(ino)
        self._notify(notify.inval_inode(ino, offset, 0))

    def _drop_node(self, ino: int) -> None:
        """Forget what this client remembers of node ``ino`` itself."""
        self.attrs.pop(ino, None)
        self._no_caps.discard(ino)
        self.ahead.forget(ino)
        self.own_dirs.drop(ino)

    def invalidate_all(self) -> None:
        self._inval_seq += 1
        self.attrs.clear()
        self.ahead.clear()
        self.own_dirs.clear()
        self.drop_listings()
        self._no_caps.clear()
        names, nodes, negatives = self.names.snapshot()
        self.names.clear_negatives()
        for parent, name in names + negatives:
            self.invalidate_entry(parent, name)
        for ino in [ROOT_ID, *nodes]:
            self.invalidate_inode(ino, 0)

    def _notify(self, chunks: list[bytes]) -> None:
        if self._send is not None:
            with self._notify_lock:
                self._send(chunks)

    # --- replays ----------------------------------------------------------------------------------
    def replay(self, change) -> bool:
        return self.replayer is not None and self.replayer.replay(change)

    def server_lookup(self, parent: int, name: bytes) -> Entry:
        entry = RemoteFileSystem.lookup(self, Context(), parent, name)
        if not entry.ino:
            raise FsError(errno.ENOENT)
        return entry

    def give_back(self, ino: int) -> None:
        if ino >> EPOCH_SHIFT == self.epoch:
            self._counts.give_back(self._h(ino))

    def name_of(self, ino: int) -> tuple[int, bytes] | None:
        names = self.names.names_of(ino)
        return names[0] if names else None

    def resume(self) -> bool:
        return super().resume()

    def _replaying(self, ctx) -> bool:
        return self.replayer is not None and self.replayer.owns(ctx)

    # --- names (recorded for invalidation) -------------------------------------------------------
    def _names_refused(self, parent: int) -> None:
        self.own_dirs.drop(parent)  # whatever it knew of them, the server knows otherwise

    def _created(self, parent: int, name: bytes, entry: Entry) -> Entry:
        self.own_dirs.added(parent, name)
        return self._named(parent, name, entry)  # (the parent's attributes: _dir_changed)

    def _dir_changing(self, parent: int):
        with self._dir_lock:
            busy = self._dir_busy.setdefault(parent, [0, 0])
            alone = busy[0] == 0
            busy[0] += 1
            busy[1] += 1
            return (busy[1], self._inval_seq) if alone else None

    def _dir_changed(self, parent: int, token, attr: Attr | None) -> None:
        with self._dir_lock:
            busy = self._dir_busy[parent]
            busy[0] -= 1
            if not busy[0]:
                del self._dir_busy[parent]
            # The attributes the server saw right after this change are the directory's now
            # only if no other change of it, nor an invalidation, overlapped this one.
            keep = attr is not None and token == (busy[1], self._inval_seq)
            self.attrs.pop(parent, None)
            if keep:
                self._keep_attr(parent, attr)

    def _made_file(self, ino: int) -> None:
        # A new file has no security.capability (the kernel asks before every write) until
        # this client sets one or an event says the host did.
        if self.mode.trust_pages:
            self._no_caps.add(ino)

    def _named(self, parent: int, name: bytes, entry: Entry, since: int | None = None) -> Entry:
        if entry.ino:
            self.names.add(parent, name, entry.ino)
            if entry.attr_timeout > 0:  # (a replayed creation's are to be asked for again)
                self._keep_attr(entry.ino, entry.attr, since)
        elif entry.entry_timeout > 0 and not self.names.add_negative(parent, name):
            entry.entry_timeout = 0  # could not be found again to invalidate: do not cache it
        return entry

    def _forward_lookup(self, parent: int, name: bytes) -> Entry:
        return RemoteFileSystem.lookup(self, Context(), parent, name)

    def lookup(self, ctx, parent, name) -> Entry:
        if self._replaying(ctx):
            return self._named(parent, name, self.replayer.lookup(parent, name,
                                                                  self._forward_lookup))
        if self.mode.cache_listings:
            if self.own_dirs.absent(parent, name):
                return self._named(parent, name, Entry(ino=0, attr=None,
                                                       entry_timeout=self.negative_timeout))
            entry = self.lookup_listed(parent, name)  # no round trip: a listing has the answer
            if entry is not None:
                return self._named(parent, name, entry)
        since = self._inval_seq
        return self._named(parent, name, super().lookup(ctx, parent, name), since)

    def mknod(self, ctx, parent, name, mode, rdev, umask) -> Entry:
        if self._replaying(ctx):
            return self._named(parent, name, self.replayer.node())
        return self._created(parent, name, super().mknod(ctx, parent, name, mode, rdev, umask))

    def mkdir(self, ctx, parent, name, mode, umask) -> Entry:
        if self._replaying(ctx):
            return self._named(parent, name, self.replayer.node())
        entry = self._created(parent, name, super().mkdir(ctx, parent, name, mode, umask))
        if self.mode.cache_listings:
            self.own_dirs.made(entry.ino)
        return entry

    def symlink(self, ctx, parent, name, target) -> Entry:
        if self._replaying(ctx):
            return self._named(parent, name, self.replayer.node())
        return self._created(parent, name, super().symlink(ctx, parent, name, target))

    def link(self, ctx, ino, new_parent, new_name) -> Entry:
        self._changed(ino)
        return self._created(new_parent, new_name, super().link(ctx, ino, new_parent, new_name))

    def create(self, ctx, parent, name, mode, umask, flags) -> tuple[Entry, Opened]:
        if self._replaying(ctx):
            return self._named(parent, name, self.replayer.node()), self.replayer.opened()
        entry, opened = super().create(ctx, parent, name, mode, umask, flags)
        return self._created(parent, name, entry), opened

    def unlink(self, ctx, parent, name) -> None:
        if self._replaying(ctx):
            self._changed(parent)
        else:
            super().unlink(ctx, parent, name)  # (the parent's attributes: _dir_changed)
            self.own_dirs.removed(parent, name)
        self._changed(self.names.remove(parent, name) or 0)

    def rmdir(self, ctx, parent, name) -> None:
        if self._replaying(ctx):
            self._changed(parent)
        else:
            super().rmdir(ctx, parent, name)
            self.own_dirs.removed(parent, name)
        gone = self.names.remove(parent, name) or 0
        self.own_dirs.drop(gone)
        self._changed(gone)

    def rename(self, ctx, parent, name, new_parent, new_name, flags) -> None:
        if not self._replaying(ctx):
            super().rename(ctx, parent, name, new_parent, new_name, flags)
            if not flags & 2:  # (RENAME_EXCHANGE leaves both names in place)
                self.own_dirs.removed(parent, name)
            self.own_dirs.added(new_parent, new_name)
        self._changed(parent, new_parent, self.names.lookup(parent, name) or 0,
                      self.names.lookup(new_parent, new_name) or 0)
        self.names.move(parent, name, new_parent, new_name, exchange=bool(flags & 2))

    def forget(self, ino: int, nlookup: int | None = None) -> None:
        if is_fake(ino):
            self.replayer.forget_fake(ino)
            return
        self.names.forget(ino)
        self._drop_node(ino)
        super().forget(ino, nlookup)

    def _keep_attr(self, ino: int, attr: Attr | None, since: int | None = None) -> None:
        """Remember ``attr``; ``since``: the invalidation count when it was asked for."""
        if attr is not None and self.mode.trust_pages and not is_fake(ino) \
                and (since is None or since == self._inval_seq):
            self.attrs[ino] = attr

    def _changed(self, *inos: int) -> None:
        """Nodes this client just changed on the server: their remembered attributes are old."""
        for ino in inos:
            self.attrs.pop(ino, None)

    def readdir(self, ctx, ino, fh, offset, plus):
        small_files = self.ahead.listing(ino, restart=offset == 0)
        since = self._inval_seq
        for record in super().readdir(ctx, ino, fh, offset, plus):
            entry = record.entry
            if entry is not None and entry.ino:
                self.names.add(ino, record.name, entry.ino)
                self._keep_attr(entry.ino, entry.attr, since)
                if is_small_file(entry.attr):
                    small_files[entry.ino] = entry.attr
            yield record

    def _listed_ahead(self, ino: int, records) -> None:
        small_files = self.ahead.listing(ino, restart=True)
        for record in records:
            entry = record.entry.entry
            if entry is not None and is_small_file(entry.attr):
                small_files[entry.ino] = entry.attr

    # --- reads -------------------------------------------------------------------------------------
    def read(self, ctx, ino, fh, offset, size) -> bytes:
        if not fh and self.mode.trust_pages:
            attr = self.attrs.get(ino)
            data = self.ahead.serve(ino, attr, offset, size)
            if data is None and offset == 0 and is_small_file(attr):
                data = self._read_ahead(ino, size)
            self.ahead.paged(ino)
            if data is not None:
                return data
        return super().read(ctx, ino, fh, offset, size)

    def _read_ahead(self, ino: int, size: int) -> bytes | None:
        """Read ``ino`` together with the small files of its directory the kernel has not
        read yet; None when there is nothing to read along (then a plain read follows)."""
        where = self.names.names_of(ino)
        picks = self.ahead.plan(ino, where[0][0] if where else None)
        if not picks:
            return None
        try:
            reply = self._call(self._stub.ReadFiles, pb.ReadFilesRequest(
                handles=[self._h(i) for i in picks], max_file_size=SMALL_FILE,
                max_total=BATCH_BYTES))
        except FsError:
            return None
        wanted, pushes = None, []
        for other, content in zip(picks, reply.files):
            if content.errno:
                continue
            if other == ino:
                wanted = content.data[:size]
            elif content.data:
                attr = self._attr(content.attr)
                self.ahead.put(other, attr, content.data)
                pushes.append((other, attr, content.data))
        if pushes and self.pusher is not None:
            self.pusher.submit(pushes)
        return wanted

    def _push_pages(self, ino: int, attr: Attr, data: bytes) -> None:
        # Under the notification lock: an event's invalidation of this file either dropped the
        # attributes before this check (nothing is pushed) or is sent after the push (and drops
        # the pushed pages).
        with self._notify_lock:
            if self._send is None or not same_version(self.attrs.get(ino), attr):
                return
            if not self._send(notify.store(ino, 0, data)):
                return  # the kernel no longer has the node
        self.ahead.stored(ino)

    def statfs(self, ctx, ino):
        # Free space changes all the time and raises no event; a figure up to 10 s old spares
        # a round trip per `df` and per directory walk (fts asks once per walk).
        now = time.monotonic()
        cached = self._statfs
        if self.mode.trust_pages and cached is not None and now - cached[0] < 10.0:
            return cached[1]
        result = super().statfs(ctx, ino)
        self._statfs = (now, result)
        return result

    # --- what a replay opens and changes never reaches the server ----------------------------
    def getxattr(self, ctx, ino, name) -> bytes:
        if self._replaying(ctx) or is_fake(ino):
            raise FsError(errno.ENODATA)  # the kernel checking security.capability before a write
        # The kernel asks for security.capability before every write; a file that had none
        # while changes stream in has none until an event or this client says otherwise.
        caps = name == b"security.capability" and self.mode.trust_pages
        if caps and ino in self._no_caps:
            raise FsError(errno.ENODATA)
        try:
            return super().getxattr(ctx, ino, name)
        except FsError as exc:
            if caps and exc.errno == errno.ENODATA:
                self._no_caps.add(ino)
            raise

    def getattr(self, ctx, ino, fh) -> AttrReply:
        if is_fake(ino):
            return AttrReply(self.replayer.fake_attr(ino), 0)
        if fh == REPLAY_FH:
            fh = None
        if self.mode.trust_pages:
            attr = self.attrs.get(ino)
            if attr is not None:
                return AttrReply(attr, self.attr_timeout)
        since = self._inval_seq
        reply = super().getattr(ctx, ino, fh)
        self._keep_attr(ino, reply.attr, since)
        return reply

    def setattr(self, ctx, ino, changes, fh) -> AttrReply:
        if is_fake(ino):
            return AttrReply(self.replayer.fake_attr(ino), 0)
        if self._replaying(ctx) or fh == REPLAY_FH:
            return super().getattr(ctx, ino, None)  # the attributes as they are now
        self._changed(ino)
        since = self._inval_seq
        reply = super().setattr(ctx, ino, changes, fh)
        self._keep_attr(ino, reply.attr, since)
        return reply

    def open(self, ctx, ino, flags) -> Opened:
        if not self.opens:
            raise FsError(errno.ENOSYS)  # no-open mode (see __init__)
        if self._replaying(ctx):
            return self.replayer.opened()
        if flags & os.O_TRUNC:
            self._changed(ino)
        return super().open(ctx, ino, flags)

    def write(self, ctx, ino, fh, offset, data, flags) -> int:
        self._changed(ino)
        return super().write(ctx, ino, fh, offset, data, flags)

    def fallocate(self, ctx, ino, fh, offset, length, mode) -> None:
        self._changed(ino)
        super().fallocate(ctx, ino, fh, offset, length, mode)

    def setxattr(self, ctx, ino, name, value, flags) -> None:
        self._changed(ino)
        self._no_caps.discard(ino)
        super().setxattr(ctx, ino, name, value, flags)

    def removexattr(self, ctx, ino, name) -> None:
        self._changed(ino)
        super().removexattr(ctx, ino, name)

    def copy_file_range(self, ctx, ino_in, fh_in, off_in, ino_out, fh_out, off_out, length,
                        flags) -> int:
        self._changed(ino_out)
        return super().copy_file_range(ctx, ino_in, fh_in, off_in, ino_out, fh_out, off_out,
                                       length, flags)

    def flush(self, ctx, ino, fh, lock_owner) -> None:
        if not self.opens:
            # Writes are never held back here and locks are the VM kernel's own, so a close has
            # nothing to tell the server: ENOSYS makes the kernel stop sending FLUSH.
            raise FsError(errno.ENOSYS)
        if fh != REPLAY_FH:
            super().flush(ctx, ino, fh, lock_owner)

    def release(self, ctx, ino, fh, flags) -> None:
        # In no-open mode the kernel sends RELEASE for nothing at all, so files this client
        # creates are closed on the server at once (fh 0): a RELEASE of one made before the
        # kernel entered that mode is of fh 0 too.
        if fh and fh != REPLAY_FH:
            super().release(ctx, ino, fh, flags)

    def opendir(self, ctx, ino, flags) -> Opened:
        if not self.opens:
            raise FsError(errno.ENOSYS)  # no-open mode (see __init__)
        return super().opendir(ctx, ino, flags)
