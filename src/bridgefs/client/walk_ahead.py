"""Listings fetched while the kernel is still busy with earlier ones: a walk of a tree (find, an
indexer, ``ls -R``) waits for a round trip only when it outruns them.

A handle-less listing brings the listings of its subdirectories along, breadth first, up to a
budget (ListDir's ``subtree_records``); the directories at its edge are left for later, and a
depth-first walk reaches them one by one, each a round trip of its own while the server sits
idle between them.  This module lists them in the background, in the order such a walk asks for
them (depth first, in listing order), one listing at a time, and only while a walk is under
way: once the kernel asked for a listing that came ahead, and while the records fetched ahead
that it has not asked for yet stay below ``lead`` (a single ``ls`` of a big tree costs nothing
more).  A readdir of a directory being fetched ahead waits for that fetch rather than asking a
second time.  On the benchmark's cold ``find`` of 10,000 files (W1, BENCHMARKS.md) the walk
makes the same 107 ListDir calls and takes a fifth less time.

Lock: ``_lock`` guards everything here and is never held across a call out.
"""

from __future__ import annotations

import logging
import stat
import threading
from collections.abc import Callable, Sequence

from bridgefs.client.dirbuf import Record

log = logging.getLogger("bridgefs.client")

Listed = Sequence[tuple[int, list[Record]]]  # (directory ino, its whole listing), as kept
_DOTS = (b".", b"..")


def edge(root: int, listed: Listed) -> list[int]:
    """Directories below ``root`` whose listings are not among ``listed``, depth first in
    listing order: the order a walk of ``root`` reaches them."""
    listings = dict(listed)
    out: list[int] = []
    seen = {root}
    stack = [iter(listings.get(root, ()))]
    while stack:
        rec = next(stack[-1], None)
        if rec is None:
            stack.pop()
            continue
        entry = rec.entry.entry
        if entry is None or entry.attr is None or rec.entry.name in _DOTS:
            continue
        if not stat.S_ISDIR(entry.attr.mode) or entry.ino in seen:
            continue
        seen.add(entry.ino)
        sub = listings.get(entry.ino)
        if sub is None:
            out.append(entry.ino)
        else:
            stack.append(iter(sub))
    return out


class WalkAhead:
    """``fetch(ino)`` lists directory ``ino`` with the listings below it, keeps them as fetched
    ahead and returns what it kept (or raises); ``listed(ino)`` says whether a whole listing of
    ``ino`` is kept already."""

    def __init__(
        self, fetch: Callable[[int], Listed], listed: Callable[[int], bool], lead: int
    ) -> None:
        self._fetch = fetch
        self._listed = listed
        self._lead = lead
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[int] = []  # the next directories a walk reaches, next first
        self._fetching: dict[int, threading.Event] = {}
        self._ahead: dict[int, int] = {}  # directory -> records kept for it, not asked for yet
        self._unasked = 0  # their sum
        # The kernel asked for a listing that came ahead since it last had to wait for one:
        # a walk is under way (a lone ``ls`` is not one).
        self._walking = False
        self._thread: threading.Thread | None = None
        self._closed = False
        self.fetched = 0  # listings fetched ahead, for tests and stats

    def arrived(self, root: int, listed: Listed) -> None:
        """The kernel asked for ``root`` and its listing came with the listings below it
        (``listed``, root's own included): the kernel will ask for those, and then for the
        directories at their edge."""
        self._arrived(root, listed, False)

    def _arrived(self, root: int, listed: Listed, root_ahead: bool) -> None:
        todo = edge(root, listed)
        with self._lock:
            if self._closed:
                return
            if not root_ahead:
                # The kernel had to ask: the walk outran what was fetched ahead, or a new one
                # started elsewhere and what an old one left will never be asked for.
                self._ahead.clear()
                self._unasked = 0
                self._walking = False
            for ino, records in listed:
                if ino != root or root_ahead:
                    self._unasked += len(records) - self._ahead.get(ino, 0)
                    self._ahead[ino] = len(records)
            queued = set(todo)
            self._pending = todo + [i for i in self._pending if i not in queued]
            if self._pending and self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="bridgefs-walk-ahead", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def asked(self, ino: int, timeout: float) -> None:
        """The kernel asks for the listing of ``ino`` from its start: wait for a fetch of it
        under way; it is no longer ahead."""
        with self._lock:
            done = self._fetching.get(ino)
            if ino in self._pending:
                self._pending.remove(ino)
        if done is not None:
            done.wait(timeout)
        with self._lock:
            if ino in self._ahead:
                self._unasked = max(0, self._unasked - self._ahead.pop(ino))
                self._walking = True
            self._wake.notify()

    def reset(self) -> None:
        """What was kept is gone (the session was lost, caches were dropped)."""
        with self._lock:
            self._pending.clear()
            self._ahead.clear()
            self._unasked = 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pending.clear()
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _next(self) -> int | None:
        with self._lock:
            while not self._closed:
                if self._pending and self._walking and self._unasked < self._lead:
                    ino = self._pending.pop(0)
                    self._fetching[ino] = threading.Event()
                    return ino
                self._wake.wait()
            return None

    def _run(self) -> None:
        while (ino := self._next()) is not None:
            listed: Listed = ()
            try:
                if not self._listed(ino):
                    listed = self._fetch(ino)
                    self.fetched += 1
            except Exception as exc:  # gone, forgotten, or the server is away: the kernel asks
                log.debug("listing %d ahead: %s", ino, exc)
            # Counted before a readdir waiting for it goes on, or its asking would find nothing
            # to take off.
            self._arrived(ino, listed, True)
            with self._lock:
                done = self._fetching.pop(ino)
            done.set()
