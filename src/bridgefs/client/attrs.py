"""Attributes the kernel was last told, answered again without a round trip while changes
stream in (the kernel asks again after reads: it leaves atime to the filesystem), and the
security.capability absences the kernel asks about before every write.

An attribute fetched across an invalidation, or across a change this client made of that node,
may be older than it and is not remembered (the kernel, too, discards such an answer):
``generation`` is a clock that moves on at every invalidation and drop; a caller reads it before
asking the server and hands it to ``keep``, which takes the answer only if nothing invalidated
everything, nor dropped that node, since.

Lock: ``_lock`` guards everything here; nothing is called while it is held.
"""

from __future__ import annotations

import threading
from typing import Any

from bridgefs.fuse.filesystem import Attr

MAX_DROPPED = 1 << 16  # nodes whose last change is remembered


class AttrCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attrs: dict[int, Attr] = {}
        self._no_caps: set[int] = set()
        self._generation = 0  # the clock: moves on at every invalidation and drop
        self._invalidated = 0  # the clock at the last invalidation
        self._dropped: dict[int, int] = {}  # node -> the clock when this client last changed it
        # Directories whose names this client is changing: [changes in flight, changes begun].
        self._dir_busy: dict[int, list[int]] = {}

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, ino: int) -> Attr | None:
        with self._lock:
            return self._attrs.get(ino)

    def keep(self, ino: int, attr: Attr | None, since: int | None = None) -> None:
        """Remember ``attr``; ``since``: the generation when it was asked for."""
        if attr is None:
            return
        with self._lock:
            if since is None or since >= max(self._invalidated, self._dropped.get(ino, 0)):
                self._attrs[ino] = attr

    def drop(self, ino: int) -> None:
        """This client is changing, or changed, ``ino``: what is remembered of it is old, and
        so is an answer on its way (asked for before the change was done: a getattr racing
        with a write would otherwise be kept, and answered later, over the kernel's newer
        size).  Changes call this before and after they reach the server."""
        with self._lock:
            self._generation += 1
            self._attrs.pop(ino, None)
            if len(self._dropped) >= MAX_DROPPED:
                self._dropped.clear()  # forgotten: then nothing asked before now is kept
                self._invalidated = self._generation
            self._dropped[ino] = self._generation

    def invalidate(self, ino: int) -> None:
        """Something else changed ``ino`` (an event): forget it, and any answer on its way."""
        with self._lock:
            self._generation += 1
            self._invalidated = self._generation
            self._attrs.pop(ino, None)
            self._no_caps.discard(ino)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._invalidated = self._generation
            self._dropped.clear()
            self._attrs.clear()
            self._no_caps.clear()

    # --- security.capability ------------------------------------------------------------------
    def has_no_caps(self, ino: int) -> bool:
        with self._lock:
            return ino in self._no_caps

    def set_no_caps(self, ino: int, none: bool) -> None:
        with self._lock:
            if none:
                self._no_caps.add(ino)
            else:
                self._no_caps.discard(ino)

    # --- a directory's attributes across changes of its names -----------------------------------
    def dir_changing(self, parent: int) -> Any:
        with self._lock:
            busy = self._dir_busy.setdefault(parent, [0, 0])
            alone = busy[0] == 0
            busy[0] += 1
            busy[1] += 1
            return (busy[1], self._invalidated) if alone else None

    def dir_changed(self, parent: int, token: Any, attr: Attr | None) -> bool:
        """Whether ``attr`` (the server's right after the change) is the directory's now: only
        if no other change of it, nor an invalidation, overlapped this one.  It is kept if so."""
        with self._lock:
            busy = self._dir_busy[parent]
            busy[0] -= 1
            if not busy[0]:
                del self._dir_busy[parent]
            self._attrs.pop(parent, None)
            keep = attr is not None and token == (busy[1], self._invalidated)
            if keep:
                self._attrs[parent] = attr  # type: ignore[assignment]
            return keep
