"""The kernel's lookup count of each node, as the session sees it go out and come back."""

from __future__ import annotations

import threading
from collections import Counter

from .abi import ROOT_ID


class LookupCounts:
    """Counts every entry handed to the kernel; reports when the kernel has forgotten a node.

    The root is never counted: the kernel holds it for the life of the mount.
    """

    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()
        self._lock = threading.Lock()

    def add(self, ino: int, n: int = 1) -> None:
        if ino == ROOT_ID or ino == 0:
            return
        with self._lock:
            self._counts[ino] += n

    def drop(self, ino: int, n: int) -> bool:
        """Take ``n`` away; True when the count reached zero (the node is forgotten)."""
        if ino == ROOT_ID:
            return False
        with self._lock:
            held = self._counts.get(ino)
            if held is None:
                return False
            left = held - n
            if left > 0:
                self._counts[ino] = left
                return False
            self._counts.pop(ino, None)
            return True

    def get(self, ino: int) -> int:
        with self._lock:
            return self._counts.get(ino, 0)

    def __len__(self) -> int:
        with self._lock:
            return len(self._counts)
