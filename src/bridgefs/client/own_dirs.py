"""Directories this client made, whose names it knows for as long as it alone changes them.

A program that makes a directory and fills it (an unpacker, `npm install`, a build's output)
looks each name up before creating it, and every one of those lookups would be a round trip that
answers "absent".  A directory made here starts empty, and while every change of its names goes
through this client the client knows them all, so the absent ones cost nothing.  An event about
the directory (a host program changed it) or an invalidation ends that knowledge.
"""

from __future__ import annotations

import threading

MAX_NAMES = 100_000  # per directory; past it the directory is no longer followed
NAME_MAX = 255


class OwnDirs:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: dict[int, set[bytes]] = {}

    def made(self, ino: int) -> None:
        with self._lock:
            self._names[ino] = set()

    def added(self, parent: int, name: bytes) -> None:
        with self._lock:
            names = self._names.get(parent)
            if names is not None:
                names.add(name)
                if len(names) > MAX_NAMES:
                    del self._names[parent]

    def removed(self, parent: int, name: bytes) -> None:
        with self._lock:
            names = self._names.get(parent)
            if names is not None:
                names.discard(name)

    def absent(self, parent: int, name: bytes) -> bool:
        """Whether ``name`` is known not to exist in ``parent``."""
        with self._lock:
            names = self._names.get(parent)
            return (
                names is not None
                and name not in names
                and name not in (b".", b"..")
                and len(name) <= NAME_MAX
            )  # a longer name is the server's to refuse

    def drop(self, ino: int) -> None:
        with self._lock:
            self._names.pop(ino, None)

    def clear(self) -> None:
        with self._lock:
            self._names.clear()
