"""Files kept open for writing by node, for a client whose kernel never opens or closes files
here (no-open mode).

Opening the file for each write and closing it after would cost an open and a close per write,
and the host would see a close-after-write (IN_CLOSE_WRITE) for every single write: a watcher on
the host reloads as often.  So the file stays open across writes and is closed once it has not
been written for ``IDLE`` seconds, when the node is forgotten, when more than ``LIMIT`` are open,
or when the session ends: the host then sees one close after the last write, as it would from a
program writing the file locally.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridgefs.server.echo import EchoLog

IDLE = 1.0
LIMIT = 64


class _Slot:
    __slots__ = ("fd", "last", "key")

    def __init__(self, fd: int, last: float, key: tuple[int, int]):
        self.fd, self.last, self.key = fd, last, key  # the kept fd, its last write, its inode


class Writers:
    def __init__(self, echo: EchoLog, idle: float = IDLE, limit: int = LIMIT):
        self._echo = echo
        self._idle = idle
        self._limit = limit
        self._lock = threading.Lock()
        self._open: OrderedDict[int, _Slot] = OrderedDict()  # by node handle
        self._by_key: dict[tuple[int, int], int] = {}  # (st_dev, st_ino) -> handle
        self._sweeper: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def use(self, handle: int, reopen: Callable[[], int]) -> Iterator[int]:
        """An fd open for writing on node ``handle`` (``reopen()`` opens one when none is)."""
        with self._lock:
            slot = self._open.get(handle)
            fd = os.dup(slot.fd) if slot is not None else None
        if fd is None:
            fd = reopen()
            self.adopt(handle, os.dup(fd))
        try:
            yield fd
        finally:
            os.close(fd)  # a duplicate: the file stays open through the kept fd
            with self._lock:
                slot = self._open.get(handle)
                if slot is not None:
                    slot.last = time.monotonic()

    def adopt(self, handle: int, fd: int) -> None:
        """Keep ``fd`` (open for writing on node ``handle``) as that node's writer."""
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        with self._lock:
            if self._closed:
                old = [fd]
            else:
                old = self._pop(handle)
                self._open[handle] = _Slot(fd, time.monotonic(), key)
                self._by_key[key] = handle
                while len(self._open) > self._limit:
                    old += self._pop(next(iter(self._open)))
                if self._sweeper is None:
                    self._sweeper = threading.Thread(
                        target=self._sweep, daemon=True, name="bridgefs-writers"
                    )
                    self._sweeper.start()
        self._close(old)

    def close(self, handle: int) -> None:
        with self._lock:
            fds = self._pop(handle)
        self._close(fds)

    def close_inode(self, key: tuple[int, int]) -> None:
        """Close the writer of inode ``key`` (st_dev, st_ino), if one is open: before the
        file loses a name, so that the host hears the close under the name it had."""
        with self._lock:
            handle = self._by_key.get(key)
            fds = self._pop(handle) if handle is not None else []
        self._close(fds)

    def _pop(self, *handles: int) -> list[int]:
        """Stop keeping the writers of ``handles``: their fds, to close outside the lock."""
        fds = []
        for handle in handles:
            slot = self._open.pop(handle, None)
            if slot is not None:
                self._by_key.pop(slot.key, None)
                fds.append(slot.fd)
        return fds

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
            fds = [s.fd for s in self._open.values()]
            self._open.clear()
            self._by_key.clear()
        self._close(fds)

    def _close(self, fds: list[int]) -> None:
        for fd in fds:
            try:
                with self._echo.closing(fd):
                    pass  # the close below is reported as a change: this session's own
            finally:
                os.close(fd)

    def _sweep(self) -> None:
        while True:
            time.sleep(self._idle / 2)
            now = time.monotonic()
            with self._lock:
                if self._closed:
                    return
                fds = self._pop(
                    *[h for h, slot in self._open.items() if now - slot.last >= self._idle]
                )
            self._close(fds)
