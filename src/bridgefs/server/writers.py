"""Files kept open for writing by node, for a client whose kernel never opens or closes files
here (no-open mode).

Opening the file for each write and closing it after would cost an open and a close per write,
and the host would see a close-after-write (IN_CLOSE_WRITE) for every single write: a watcher on
the host reloads as often.  So the file stays open across writes and is closed once it has not
been written for ``IDLE`` seconds, when the node is forgotten, when more than ``LIMIT`` are open,
or when the session ends: the host then sees one close after the last write, as it would from a
program writing the file locally.

Nobody waits for that close, yet on some hosts (NFS, FUSE filesystems) it is where a write the
host could not keep is reported: its error is kept for the node, and the next write or fsync of
the node raises it (``check``), so the client's program hears of it.
"""

from __future__ import annotations

import contextlib
import errno
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
        self._failed: dict[int, int] = {}  # handle -> errno of its writer's close
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
                old = [(handle, fd)]
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
        """Close the writer of a node the client forgot (nobody can ask for its error)."""
        with self._lock:
            fds = self._pop(handle)
        self._close(fds)
        with self._lock:
            self._failed.pop(handle, None)

    def check(self, handle: int) -> None:
        """Raise, once, the error the close of node ``handle``'s writer reported."""
        with self._lock:
            err = self._failed.pop(handle, None)
        if err is not None:
            raise OSError(err, "the host reported a lost write when the file was closed")

    def close_inode(self, key: tuple[int, int]) -> None:
        """Close the writer of inode ``key`` (st_dev, st_ino), if one is open: before the
        file loses a name, so that the host hears the close under the name it had."""
        with self._lock:
            handle = self._by_key.get(key)
            fds = self._pop(handle) if handle is not None else []
        self._close(fds)

    def _pop(self, *handles: int) -> list[tuple[int, int]]:
        """Stop keeping the writers of ``handles``: (handle, fd)s, to close outside the lock."""
        fds = []
        for handle in handles:
            slot = self._open.pop(handle, None)
            if slot is not None:
                self._by_key.pop(slot.key, None)
                fds.append((handle, slot.fd))
        return fds

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
            fds = list(self._pop(*self._open))
            self._failed.clear()  # the session is over: nobody is left to tell
        self._close(fds)

    def _close(self, fds: list[tuple[int, int]]) -> None:
        for handle, fd in fds:
            try:
                with self._echo.closing(fd):
                    pass  # the close below is reported as a change: this session's own
            finally:
                try:
                    os.close(fd)
                except OSError as exc:  # the fd is closed all the same (Linux)
                    with self._lock:
                        if not self._closed:
                            self._failed.setdefault(handle, exc.errno or errno.EIO)

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
