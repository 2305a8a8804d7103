"""Opens that cost no round trip until they are used.

While host changes stream in, a read-only open of a file (or an opendir) whose data the kernel
already caches needs nothing from the server: the kernel answers the reads itself.  So such opens
are answered at once with a lazy handle, and the server is asked to open the file only when the
first READ (or READDIR) actually comes.
"""

from __future__ import annotations

import threading

LAZY_BIT = 1 << 62  # below the replay handles, far above what the server issues


class LazyHandles:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = LAZY_BIT
        self._open: dict[int, list] = {}  # lazy fh -> [ino, flags, server fh or None]
        self._opening: dict[int, threading.Lock] = {}

    @staticmethod
    def is_lazy(fh: int | None) -> bool:
        return fh is not None and LAZY_BIT <= fh < (LAZY_BIT << 1)

    def new(self, ino: int, flags: int) -> int:
        with self._lock:
            fh = self._next
            self._next += 1
            self._open[fh] = [ino, flags, None]
            self._opening[fh] = threading.Lock()
            return fh

    def resolve(self, fh: int, open_on_server) -> int:
        """The server's handle for lazy ``fh``, opening it there on first use."""
        with self._lock:
            slot = self._open.get(fh)
            gate = self._opening.get(fh)
        if slot is None:
            raise KeyError(fh)
        if slot[2] is None:
            with gate:  # two first reads at once must not open twice
                if slot[2] is None:
                    slot[2] = open_on_server(slot[0], slot[1])
        return slot[2]

    def release(self, fh: int) -> int | None:
        """Forget lazy ``fh``; the server handle to release, if it was ever opened there."""
        with self._lock:
            slot = self._open.pop(fh, None)
            self._opening.pop(fh, None)
        return None if slot is None else slot[2]

    def forget_server_handles(self) -> None:
        """The server session was lost: reopen on next use (reads of files already open go on)."""
        with self._lock:
            for slot in self._open.values():
                slot[2] = None

    def server_fh(self, fh: int) -> int | None:
        with self._lock:
            slot = self._open.get(fh)
        return None if slot is None else slot[2]
