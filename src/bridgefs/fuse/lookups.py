"""The kernel's lookup count of each node, as the session sees it go out and come back."""

from __future__ import annotations

import threading

from .abi import ROOT_ID


class LookupCounts:
    """Counts every entry handed to the kernel; reports when the kernel has forgotten a node.

    The root is never counted: the kernel holds it for the life of the mount.
    """

    def __init__(self) -> None:
        # ino -> [references the kernel holds, references handed out since it last held none]
        self._counts: dict[int, list[int]] = {}
        self._lock = threading.Lock()

    def add(self, ino: int, n: int = 1) -> None:
        if ino == ROOT_ID or ino == 0:
            return
        with self._lock:
            slot = self._counts.get(ino)
            if slot is None:
                self._counts[ino] = [n, n]
            else:
                slot[0] += n
                slot[1] += n

    def drop(self, ino: int, n: int) -> int:
        """Take ``n`` away.  When the kernel holds no more references, returns how many it was
        handed in all (the filesystem returns exactly those, not one still on its way); else 0."""
        if ino == ROOT_ID:
            return 0
        with self._lock:
            slot = self._counts.get(ino)
            if slot is None:
                return 0
            slot[0] -= n
            if slot[0] > 0:
                return 0
            del self._counts[ino]
            return slot[1]

    def get(self, ino: int) -> int:
        with self._lock:
            slot = self._counts.get(ino)
            return slot[0] if slot else 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._counts)
