"""From watchdog events (and watchdog's overflow log records) to Watch changes, and the bounded
queue of one Watch stream.

A change is a small tuple ``(kind, path, dest, is_dir)``: kind a ``ChangeKind``, path and dest
tuples of byte components relative to the share root (never absolute, never "." or "..").
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from watchdog.events import FileSystemEvent, FileSystemMovedEvent

from bridgefs.change_kinds import ChangeKind
from bridgefs.rpc import pb

if TYPE_CHECKING:
    from bridgefs.server.sessions import Session
    from bridgefs.server.watcher import ShareWatch

Path = tuple[bytes, ...]  # components below the share root
Change = tuple[int, Path, Path, bool]  # (kind, path, dest, is_dir)

WATCHING, CREATED, DELETED, MODIFIED, ATTRIB, MOVED, OVERFLOW = (
    ChangeKind.WATCHING,
    ChangeKind.CREATED,
    ChangeKind.DELETED,
    ChangeKind.MODIFIED,
    ChangeKind.ATTRIB,
    ChangeKind.MOVED,
    ChangeKind.OVERFLOW,
)
CLOSED = -1  # a file open for writing was closed: a MODIFIED unless one was just reported
GONE = -2  # the share root itself was deleted: the watch cannot go on

OVERFLOW_CHANGE: Change = (OVERFLOW, (), (), False)
ENTRY_KINDS = frozenset((CREATED, DELETED, MOVED))
QUEUE_LIMIT = 10_000


def relative(path: str | bytes, root: bytes) -> Path | None:
    """``path`` as components below ``root``; None if it is not inside (or is odd)."""
    if not path:
        return None
    raw = os.fsencode(path)
    if raw == root:
        return ()
    prefix = root if root.endswith(b"/") else root + b"/"
    if not raw.startswith(prefix):
        return None
    parts = tuple(p for p in raw[len(prefix) :].split(b"/") if p)
    if not parts or b"." in parts or b".." in parts:
        return None
    return parts


def translate(event: FileSystemEvent, root: bytes) -> Change | None:
    """The change an event stands for, or None for events a client has no use for."""
    if event.is_synthetic:
        # Made up by watchdog for the contents of a moved or moved-in directory: the change of
        # the directory itself already tells the client its whole subtree moved or is new.
        return None
    is_dir = event.is_directory
    kind = event.event_type
    if isinstance(event, FileSystemMovedEvent):
        src, dest = relative(event.src_path, root), relative(event.dest_path, root)
        if src == () or dest == ():
            return None
        if src is not None and dest is not None:
            return (MOVED, src, dest, is_dir)
        if dest is not None:
            return (CREATED, dest, (), is_dir)  # moved in from outside the share
        if src is not None:
            return (DELETED, src, (), is_dir)  # moved out of it
        return None
    path = relative(event.src_path, root)
    if path is None:
        return None
    if kind == "attrib":
        return (ATTRIB, path, (), is_dir)  # the root's own attributes matter too
    if path == ():
        return (GONE, (), (), True) if kind == "deleted" else None
    if kind == "created":
        return (CREATED, path, (), is_dir)
    if kind == "deleted":
        return (DELETED, path, (), is_dir)
    if kind == "modified":
        # A directory "modified" is watchdog's note that its listing changed; the created,
        # deleted or moved change of the child says exactly how.
        return None if is_dir else (MODIFIED, path, (), False)
    if kind == "closed":
        return (CLOSED, path, (), False)
    return None  # opened, closed without writing


def message(change: Change, seq: int) -> pb.Change:
    kind, path, dest, is_dir = change
    # One of pb.Change's kinds: CLOSED and GONE are settled before a change is sent.
    return pb.Change(
        kind=cast("pb.Change.Kind", int(kind)), path=path, dest=dest, is_dir=is_dir, seq=seq
    )


# Under pressure (the queue half full), a change the client learns nothing from while one of
# these still waits for the same path: it looks at the file only after both happened.  Merging
# them then keeps a burst (a checkout, an unpack) from ending in OVERFLOW, which would cost the
# client every cache and a watcher in the VM every event.
_ABSORBED_BY: dict[int, frozenset[int]] = {
    MODIFIED: frozenset((CREATED, MODIFIED)),
    ATTRIB: frozenset((CREATED, MODIFIED, ATTRIB)),
}


class Subscription:
    """The queue between a share's watcher and one Watch stream.

    Bounded: when ``limit`` changes wait unsent, they are all dropped for one OVERFLOW (the client
    must revalidate everything anyway), so a burst of host changes never grows memory.  A change
    identical to the last one still waiting for that path is dropped: the client sees that one
    after both happened.  Nothing already sent counts, so a slow reader gets fewer changes, a fast
    one all of them, and no change is ever lost.  Different kinds are merged only under pressure
    (_ABSORBED_BY): the client replays each kind as the event a watcher in the VM expects.
    """

    def __init__(self, session: Session, limit: int = QUEUE_LIMIT):
        self.session = session
        self.watch: ShareWatch | None = None  # the ShareWatch feeding this queue
        self.released = False
        self.limit = max(2, limit)
        self.high_water = 0
        self._queue: deque[Change] = deque()
        self._latest: dict[Path, Change] = {}  # path -> the last change naming it still queued
        self._cond = threading.Condition()
        self._closed = False
        self._ending = False

    @property
    def closed(self) -> bool:
        return self._closed

    def push(self, change: Change) -> None:
        with self._cond:
            if self._closed or self._ending:
                return
            if self._queue and self._queue[-1] == change:
                return
            path, dest = change[1], change[2]
            waiting = self._latest.get(path)  # a MOVED or DELETED in between would be this
            if waiting is not None and (
                waiting == change
                or (
                    len(self._queue) >= self.limit // 2
                    and waiting[1] == path
                    and waiting[0] in _ABSORBED_BY.get(change[0], ())
                )
            ):
                return
            if change == OVERFLOW_CHANGE or len(self._queue) >= self.limit:
                self._queue.clear()
                self._latest.clear()
                change = OVERFLOW_CHANGE
            else:
                self._latest[path] = change
                if dest:
                    self._latest[dest] = change
            self._queue.append(change)
            self.high_water = max(self.high_water, len(self._queue))
            self._cond.notify()

    def end(self, overflow: bool = False) -> None:
        """Let the stream send what waits (after one OVERFLOW if asked), then finish."""
        with self._cond:
            if overflow and not self._ending:
                self._queue.clear()
                self._latest.clear()
                self._queue.append(OVERFLOW_CHANGE)
            self._ending = True
            self._cond.notify_all()

    def close(self) -> None:
        """Finish now: the stream is gone or replaced."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._latest.clear()
            self._cond.notify_all()

    def get(self, timeout: float) -> Change | None:
        """The next change; None on timeout; raises EOFError once the stream must finish."""
        with self._cond:
            if not self._queue and not self._closed and not self._ending:
                self._cond.wait(timeout)
            if self._closed or (self._ending and not self._queue):
                raise EOFError
            if not self._queue:
                return None
            change = self._queue.popleft()
            for path in (change[1], change[2]):
                if self._latest.get(path) is change:
                    del self._latest[path]
            return change


# --- watchdog's log as an overflow signal ------------------------------------------------------
class _OverflowLog(logging.Handler):
    """watchdog reports a kernel queue overflow, and its own failures, only in its log: no event
    reaches a handler.  Its records become OVERFLOW for the watches they concern."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.listeners: dict[int, tuple[bytes, Callable[[], object]]] = {}
        self.ids = itertools.count()
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().lower()
            if "overflow" not in text and record.levelno < logging.ERROR:
                return
            with self.guard:
                listeners = list(self.listeners.values())
            # A record naming paths concerns the watches of those paths (maybe none of ours).
            # One naming none (inotify's "events were lost") could be about any watch: a spare
            # OVERFLOW only costs a revalidation.
            args = record.args if isinstance(record.args, tuple) else ()
            paths = {os.fsencode(a) for a in args if isinstance(a, (str, bytes))}
            paths = {p for p in paths if p.startswith(b"/")}
            if paths:
                targets = [
                    cb
                    for root, cb in listeners
                    if any(p == root or p.startswith(root.rstrip(b"/") + b"/") for p in paths)
                ]
            else:
                targets = [cb for _, cb in listeners] if "overflow" in text else []
            for callback in targets:
                callback()
        except Exception:
            self.handleError(record)


_overflow_log = _OverflowLog()
_install_lock = threading.Lock()
_installed = False


def on_overflow(root: bytes, callback: Callable[[], object]) -> Callable[[], None]:
    """Call ``callback()`` when watchdog logs an overflow or failure for the tree at ``root``;
    returns the function that stops it."""
    global _installed
    with _install_lock:
        if not _installed:
            wd = logging.getLogger("watchdog")
            wd.addHandler(_overflow_log)
            if not wd.isEnabledFor(logging.WARNING):
                wd.setLevel(logging.WARNING)  # the overflow warning must reach the handler
            _installed = True
    with _overflow_log.guard:
        key = next(_overflow_log.ids)
        _overflow_log.listeners[key] = (root, callback)

    def stop() -> None:
        with _overflow_log.guard:
            _overflow_log.listeners.pop(key, None)

    return stop
