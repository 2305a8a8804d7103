"""Host-side change watching: one watchdog observer per watched share, fanned out to the Watch
streams of that share's sessions.

The observer runs only while at least one stream watches the share; the last stream to go stops
and joins it.  Each event becomes a change (changes.py), is checked against every session's echo
log (echo.py) and queued for the streams whose session did not cause it.

A kernel queue overflow (watchdog only logs it, see changes.on_overflow) or a failure handling an
event sends OVERFLOW; an observer whose threads died, or a share root removed, ends the streams
with OVERFLOW.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from bridgefs.rpc import pb
from bridgefs.server import at, testhook
from bridgefs.server.changes import (
    CLOSED,
    CREATED,
    ENTRY_KINDS,
    GONE,
    MODIFIED,
    OVERFLOW_CHANGE,
    QUEUE_LIMIT,
    WATCHING,
    Change,
    Path,
    Subscription,
    message,
    on_overflow,
    translate,
)
from bridgefs.server.confine import check_name
from bridgefs.server.echo import Key, Probe, Stamp, key_of, stamp_of
from bridgefs.server.shares import Share

if TYPE_CHECKING:
    from bridgefs.server.sessions import Session

log = logging.getLogger("bridgefs.server")

# watchdog warns (with its whole watch table) when a directory made during its recursive scan gets
# watched twice; the second watch is harmless and the warning would flood the server's log.
warnings.filterwarnings(
    "ignore", message="Callback with id", category=RuntimeWarning, module=r"watchdog\."
)

WATCHING_CHANGE: Change = (WATCHING, (), (), False)
# Only what becomes a change: fewer kernel events per file written (no opens, no closes without
# a write, no "directory modified" for every entry) means fewer kernel queue overflows in a burst.
EVENTS = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    DirAttribEvent,
    FileMovedEvent,
    DirMovedEvent,
    FileClosedEvent,
]
CLOSE_WINDOW = 0.05  # a close this soon after the file's MODIFIED/CREATED adds nothing
_RECENT_LIMIT = 4096


class ShareWatch(FileSystemEventHandler):
    def __init__(self, share: Share, observer_factory: Callable[[], BaseObserver] = Observer):
        self.share = share
        self.root = os.fsencode(share.path)
        self.subs: tuple[Subscription, ...] = ()  # replaced, never mutated: read without a lock
        self._factory = observer_factory
        self._start_lock = threading.Lock()
        self.observer: BaseObserver | None = None
        self._failed: OSError | None = None
        self._recent: dict[Path, float] = {}  # path -> when it was last CREATED or MODIFIED
        self._unlisten: Callable[[], None] | None = None

    # --- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the observer (once); returns when every directory of the tree is watched."""
        with self._start_lock:
            if self._failed is not None:
                raise self._failed
            if self.observer is not None:
                return
            observer = self._factory()
            observer.name = f"bridgefs-watch-{self.share.name}"
            unlisten = on_overflow(self.root, self.overflow)
            try:
                observer.schedule(self, self.share.path, recursive=True, event_filter=EVENTS)
                observer.start()
            except BaseException as exc:
                unlisten()
                _stop(observer)
                self._failed = exc if isinstance(exc, OSError) else OSError(errno.EIO, str(exc))
                raise self._failed from exc
            self.observer, self._unlisten = observer, unlisten
        log.info("watching share %s", self.share)

    def alive(self) -> bool:
        try:
            # The server's own fds keep a removed root's inode alive, so the observer is never
            # told it was deleted: a directory without links is.
            if os.fstat(self.share.root_fd).st_nlink == 0:
                return False
        except OSError:
            return False
        observer = self.observer
        return observer is None or (
            observer.is_alive() and all(e.is_alive() for e in observer.emitters)
        )

    def stop(self) -> None:
        with self._start_lock:
            observer, self.observer = self.observer, None
            unlisten, self._unlisten = self._unlisten, None
        if unlisten is not None:
            unlisten()
        if observer is not None:
            _stop(observer)
            log.info("stopped watching share %s", self.share.name)

    def fail(self, why: str) -> None:
        """The watch is broken: every stream gets OVERFLOW and ends."""
        log.warning("watch of share %s failed: %s", self.share.name, why)
        for sub in self.subs:
            sub.end(overflow=True)

    def overflow(self) -> None:
        self._recent = {}  # what was seen before the loss proves nothing now
        for sub in self.subs:
            sub.push(OVERFLOW_CHANGE)

    # --- events (the observer's thread) ----------------------------------------------------------
    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            change = translate(event, self.root)
            if change is not None:
                change = self._coalesce(change)
            if change is None:
                return
            if change[0] == GONE:
                self.fail("the share root was removed")
                return
            probe = None
            for sub in self.subs:
                echo = sub.session.echo
                if echo and not testhook.ECHO_OWN_CHANGES:
                    probe = probe or self._probe(change)
                    if echo.is_echo(probe):
                        continue
                sub.push(change)
        except Exception:
            log.exception("watch of share %s: cannot handle %r", self.share.name, event)
            self.overflow()

    def _coalesce(self, change: Change) -> Change | None:
        """Drop what adds nothing for a client.  Closing a file written (or created) a moment ago
        adds nothing to the MODIFIED (or CREATED) already reported; a close long after, as after
        writes through mmap, does.  A second CREATED with no DELETED or MOVED since is watchdog
        reporting a new directory's early entries twice (from its scan and from the kernel)."""
        kind, path = change[0], change[1]
        now = time.monotonic()
        recent = self._recent
        if kind == CLOSED:
            last = recent.get(path)
            if last is not None and now - last < CLOSE_WINDOW:
                return None
            change = (MODIFIED, path, (), False)
        elif kind == CREATED and path in recent:
            return None
        elif kind not in (MODIFIED, CREATED):
            recent.pop(path, None)
            if change[2]:
                recent.pop(change[2], None)
            return change
        recent.pop(path, None)  # to the end: the oldest go first when it is full
        recent[path] = now
        if len(recent) > _RECENT_LIMIT:
            for old in list(itertools.islice(recent, _RECENT_LIMIT // 2)):
                del recent[old]
        return change

    def _stat(self, parts: Path) -> os.stat_result | None:
        try:
            return at.stat_below(self.share.root_fd, [check_name(p) for p in parts])
        except OSError:  # a part that is no name (Refused) too
            return None

    def _probe(self, change: Change) -> Probe:
        kind, path, dest, _ = change
        entries: list[tuple[Key | None, bytes]] = []
        for parts in (path, dest):
            if parts:
                parent = self._stat(parts[:-1])
                entries.append((key_of(parent) if parent is not None else None, parts[-1]))
        if kind in ENTRY_KINDS and kind != CREATED:
            return Probe(kind, tuple(entries))
        # A creation: whose node is there now; a change of a node: in which state.
        return Probe(kind, tuple(entries), self._node_at(path), lambda: self._node_at(path))

    def _node_at(self, path: Path) -> tuple[Key, Stamp] | None:
        st = self._stat(path)
        return (key_of(st), stamp_of(st)) if st is not None else None


def _stop(observer: BaseObserver) -> None:
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(10)
    except RuntimeError:
        pass  # never started


class WatchHub:
    """The server's watches: share name -> ShareWatch, while any stream watches it."""

    def __init__(
        self,
        queue_limit: int = QUEUE_LIMIT,
        observer_factory: Callable[[], BaseObserver] = Observer,
    ):
        self.queue_limit = queue_limit
        self.observer_factory = observer_factory
        self._lock = threading.Lock()
        self._watches: dict[str, ShareWatch] = {}
        self._by_session: dict[str, Subscription] = {}
        self._closed = False

    def subscribe(self, session: Session) -> Subscription:
        """A new stream for ``session``, its share watched when this returns; raises OSError."""
        sub = Subscription(session, self.queue_limit)
        with self._lock:
            if self._closed:
                raise OSError(errno.ESHUTDOWN, "server stopping")
            # One stream per session: a client that reconnects replaces its old stream, and a
            # stream holds a server thread, so sessions cannot take them all.
            old = self._by_session.get(session.token)
            self._by_session[session.token] = sub
            sw = self._watches.get(session.share.name)
            if sw is None:
                sw = self._watches[session.share.name] = ShareWatch(
                    session.share, self.observer_factory
                )
            sw.subs += (sub,)
            sub.watch = sw
        if old is not None:
            old.close()
        session.echo.watching(True)
        try:
            sw.start()
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        stop = None
        with self._lock:
            if sub.released:
                return
            sub.released = True
            token = sub.session.token
            if self._by_session.get(token) is sub:
                del self._by_session[token]
            sw = sub.watch
            if sw is not None and sub in sw.subs:
                sw.subs = tuple(s for s in sw.subs if s is not sub)
                if not sw.subs:
                    # Stopped even when close() dropped it already: a start racing with close()
                    # may have begun its observer after close() stopped it.
                    if self._watches.get(sw.share.name) is sw:
                        del self._watches[sw.share.name]
                    stop = sw
        sub.session.echo.watching(False)
        if stop is not None:
            stop.stop()  # outside the lock: joining takes a moment

    def watched(self) -> list[str]:
        """Names of the shares being watched now."""
        with self._lock:
            return sorted(self._watches)

    def subscription(self, token: str) -> Subscription | None:
        with self._lock:
            return self._by_session.get(token)

    def close(self) -> None:
        """Server stop: end every stream and stop every observer."""
        with self._lock:
            self._closed = True
            watches = list(self._watches.values())
            self._watches.clear()
            subs = list(self._by_session.values())
        for sub in subs:
            sub.end()
        for sw in watches:
            sw.stop()


POLL = 0.2  # how often an idle stream checks its session, its client and its observer


def stream(hub: WatchHub, sub: Subscription, active: Callable[[], bool]) -> Iterator[pb.Change]:
    """The messages of one Watch stream: WATCHING, then changes, seq counting from 1.

    Ends when the subscription is closed or ended, the session ends, or ``active()`` turns false
    (the client went away); the subscription is released in every case."""
    try:
        seq = 1
        yield message(WATCHING_CHANGE, seq)
        while True:
            try:
                change = sub.get(POLL)
            except EOFError:
                return
            if sub.session.closed or not active():
                return
            if change is None:
                watch = sub.watch
                if watch is not None and not watch.alive():
                    watch.fail("the observer stopped")
                continue
            seq += 1
            yield message(change, seq)
    finally:
        hub.unsubscribe(sub)
