"""A remote share that follows host-side changes, assembled from its parts.

The stack the kernel's requests go through, outermost first:

    WatchedShare   life cycle: the change stream, the page pusher, the trimmer; status
    JournalingLayer  changes made through the mount, into the change journal (journal.py)
    NamingLayer    records every name the kernel is handed (names.py)
    ReplayGate     answers a replay's requests from its plan (replay.py)
    SizeWatch      the largest size the host was seen with, per file (host_sizes.py)
    CachingLayer   answers from what is known while changes stream in; drops what changes
    RemoteFileSystem   one round trip per operation (session.py, listings.py, writes.py)

Beside it: the change stream (changes.py) turns host changes into exact invalidations
(invalidate.py) and replays; read_ahead.py fetches small files along and pushes them into the
page cache.  While host changes are followed, files and directories are never opened: OPEN and
OPENDIR answer ENOSYS, which puts the kernel in no-open mode for the mount (no OPEN, RELEASE,
OPENDIR or RELEASEDIR; pages and listings kept across opens; I/O addressed by node).  Events
keep those caches right, and while they are down the kernel still drops pages and listings
whose mtime or size changed (AUTO_INVAL_DATA).
"""

from __future__ import annotations

from typing import Any

from bridgefs.client.attrs import AttrCache
from bridgefs.client.cache_policy import CachePolicy
from bridgefs.client.caching import CachingLayer
from bridgefs.client.changes import ChangeStream
from bridgefs.client.convert import HostChange
from bridgefs.client.gate import ReplayGate
from bridgefs.client.host_sizes import HostSizes, SizeWatch
from bridgefs.client.invalidate import Invalidator, KernelNotifier
from bridgefs.client.journal import ChangeJournal
from bridgefs.client.journaling import JournalingLayer
from bridgefs.client.layer import Layer
from bridgefs.client.names import NameTable
from bridgefs.client.naming import NamingLayer
from bridgefs.client.read_ahead import ReadAhead
from bridgefs.client.remote import RemoteFileSystem
from bridgefs.client.replay import Replayer
from bridgefs.client.trim import Trimmer
from bridgefs.fuse.filesystem import Attr, Context, FsError, Notifier


class WatchedShare(Layer):
    """``watch``: follow host changes (long caches, replays, no-open mode); without it the
    share is the remote's alone, with short timeouts.  ``writeback_cache``: the mount lets the
    kernel hold dirty pages (no page pushing).  Other arguments: RemoteFileSystem's."""

    def __init__(
        self,
        address: str,
        share: str,
        *,
        watch: bool = True,
        long_timeout: float = 3600.0,
        entry_timeout: float = 1.0,
        attr_timeout: float = 1.0,
        negative_timeout: float = 0.0,
        writeback_cache: bool = False,
        **remote: Any,
    ):
        self.watch = watch
        # With the writeback cache the kernel's pages may be dirty (written, not sent yet)
        # while the server's attributes of the file are unchanged: contents read ahead must not
        # be pushed into them (FUSE_NOTIFY_STORE overwrites dirty pages).  They still serve
        # READs, which the kernel sends only for pages it does not hold.
        self.push_pages = not writeback_cache
        self.policy = CachePolicy(entry_timeout, attr_timeout, negative_timeout, long_timeout)
        self.remote = RemoteFileSystem(
            address, share, opens=not watch, policy=self.policy, **remote
        )
        self.names = NameTable()
        self.notifier = KernelNotifier()
        attrs = AttrCache()
        self.read_ahead = ReadAhead(self.remote.read_files, self.names, attrs, self.notifier)
        self.caching = CachingLayer(
            self.remote, self.policy, self.names, self.remote.listings, self.read_ahead, attrs
        )
        self.remote.facts = self.caching
        self.invalidate = Invalidator(self.notifier, self.names, self.remote.listings, self.caching)
        sizes = HostSizes()
        self.replayer = Replayer(
            self.names,
            self.remote.server_lookup,
            self.remote.give_back,
            self.invalidate.entry,
            self._host_attr,
            sizes,
        )
        gate = ReplayGate(SizeWatch(self.caching, sizes), self.replayer)
        naming = NamingLayer(gate, self.names)
        self.remote.session.locate = naming.locate
        # (Without the stream the journal never follows: every answer is "everything".)
        self.journal = ChangeJournal()
        super().__init__(JournalingLayer(naming, self.names, self.journal))
        self.stream: ChangeStream | None = None
        self.trimmer: Trimmer | None = None

    # --- life cycle -------------------------------------------------------------------------------
    def attach(self, notifier: Notifier, mountpoint: str) -> None:
        self.notifier.attach(notifier)
        self.replayer.mountpoint = mountpoint

    def mounted(self) -> None:
        if self.watch and self.stream is None:
            self.stream = ChangeStream(self)
            self.stream.start()
            if self.push_pages:
                self.read_ahead.start()
        if self.remote.max_nodes and self.trimmer is None:
            self.trimmer = Trimmer(
                self.remote.session.counts, self.remote.max_nodes, self.names, self.invalidate
            )
            self.trimmer.start()

    def status(self) -> dict[str, Any]:
        stream = self.stream
        mode = self.policy.mode
        return {
            "events": "flowing"
            if stream and stream.flowing
            else ("off" if not self.watch else "down"),
            "cache_mode": mode.name,
            "entry_timeout": mode.entry_timeout,
            "attr_timeout": mode.attr_timeout,
            "known_names": len(self.names),
            **(stream.counts if stream else {}),
        }

    def changes_since(self, token: str, under: bytes) -> tuple[str, list[bytes] | None]:
        return self.journal.since(token, under)

    def destroy(self) -> None:
        self.close()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        if self.trimmer is not None:
            self.trimmer.close()
        self.read_ahead.close()
        self.remote.close()

    # --- what the change stream drives ------------------------------------------------------------
    def open_watch(self) -> Any:
        return self.remote.session.watch()

    def resume(self) -> bool:
        return self.remote.resume()

    def use_long_caches(self, on: bool) -> None:
        # (Turned off, everything remembered is dropped by the invalidation that follows.)
        self.policy.use_long(on)

    def _host_attr(self, ino: int) -> Attr | None:
        try:
            return self.remote.getattr(Context(), ino, None).attr  # (no cache: the server's)
        except FsError:
            return None

    def replay(self, change: HostChange) -> bool:
        return bool(self.replayer.mountpoint) and self.replayer.replay(change)
