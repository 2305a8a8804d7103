"""Releases of open files, sent in batches from a thread of their own.

The kernel takes no answer from a RELEASE (the close that caused it has returned already), so
waiting for the server is only a round trip per closed file: an unpack or a build that writes
thousands of files pays one per file.  Queued instead, releases go out together within
``BATCH_DELAY``, or at once when ``BATCH_MAX`` wait.

Nothing depends on a release having reached the server but the server's bound on open files:
a call refused for it sends what waits and is tried again (see RemoteFileSystem.create).  A failed
release is logged, as the kernel would have dropped its error too; writes through the handle
were answered (or their failure kept for fsync and close) before the release was queued.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("bridgefs.client")

BATCH_MAX = 256
BATCH_DELAY = 0.02


class ReleaseQueue:
    def __init__(self, send: Callable[[list[tuple[int, int]]], None]):
        self._send_batch = send  # [(node handle, fh), ...] in one call
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[tuple[int, int]] = []
        self._since = 0.0
        self._sending = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="bridgefs-release", daemon=True)
        self._thread.start()

    def add(self, handle: int, fh: int) -> None:
        with self._lock:
            if self._stopping:
                return  # the session ends: Goodbye closes every file
            if not self._pending:
                self._since = time.monotonic()
            self._pending.append((handle, fh))
            if len(self._pending) == 1 or len(self._pending) >= BATCH_MAX:
                self._wake.notify()

    def __len__(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Send what waits now, and wait until every release taken so far was answered."""
        with self._lock:
            while self._sending:
                self._wake.wait(0.05)
            batch, self._pending = self._pending, []
        if batch:
            self._send(batch)

    def reset(self) -> None:
        """The session was lost, and every file it had open with it."""
        with self._lock:
            self._pending = []

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._pending = []
            self._wake.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5)

    def _send(self, batch: list[tuple[int, int]]) -> None:
        try:
            self._send_batch(batch)
        except OSError as exc:
            log.warning(
                "release of %d open files failed: %s",
                len(batch),
                errno.errorcode.get(exc.errno or 0, exc.errno),
            )

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping:
                    if self._pending:
                        left = BATCH_DELAY - (time.monotonic() - self._since)
                        if left <= 0 or len(self._pending) >= BATCH_MAX:
                            break
                        self._wake.wait(left)
                    else:
                        self._wake.wait()
                if self._stopping:
                    return
                batch, self._pending = self._pending, []
                self._sending = True
            try:
                self._send(batch)
            finally:
                with self._lock:
                    self._sending = False
                    self._wake.notify_all()
