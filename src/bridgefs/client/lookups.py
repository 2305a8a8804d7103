"""Client-side lookup counts and the background sender of Forget batches and keep-alive pings.

The client counts every Entry it hands to the FUSE layer per server handle.  When the kernel has
forgotten a node, ``forget(handle)`` queues Forget(handle, received) and drops the count; a handle
the server hands out again afterwards starts a fresh count, so a Lookup reply racing with the
Forget is either included in it (and the server's count stays positive for the new reference)
or lands after it (and the server has already allocated a new handle).  Counting a reference the
kernel never saw only makes the server drop the node when the kernel forgets it, which is right;
counting too few would drop a node the kernel still uses, so every path errs on the high side.

Forgets are sent in batches from one thread, after a short delay or when a batch fills up; the
same thread pings the server when the client has been idle, so the session is not reaped.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("bridgefs.client")

BATCH_MAX = 1024
BATCH_DELAY = 0.02
_QUEUE_CAP = 1 << 20  # past this, forgets are dropped: the server bounds what it holds anyway


class LookupCounts:
    def __init__(
        self,
        send_forget: Callable[[list[tuple[int, int]]], None],
        send_ping: Callable[[], None],
        ping_interval: float,
    ):
        self._send_forget = send_forget
        self._send_ping = send_ping
        self._ping_interval = ping_interval
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._received: dict[int, int] = {}
        self._pending: dict[int, int] = {}
        self._pending_since = 0.0
        self._last_activity = time.monotonic()
        self._stopping = False
        self._sending = False
        self._thread = threading.Thread(target=self._run, name="bridgefs-forget", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # --- counting ---------------------------------------------------------------------------
    def received(self, handle: int) -> None:
        with self._lock:
            self._received[handle] = self._received.get(handle, 0) + 1

    def count(self, handle: int) -> int:
        with self._lock:
            return self._received.get(handle, 0)

    def forget(self, handle: int, nlookup: int | None = None) -> None:
        """The kernel forgot ``handle``: return ``nlookup`` references, or all received."""
        with self._lock:
            held = self._received.pop(handle, 0)
            n = held if nlookup is None else nlookup
            if nlookup is not None and held > nlookup:
                self._received[handle] = held - nlookup
            if n > 0:
                self._queue_locked(handle, n)

    def give_back(self, handle: int, n: int = 1) -> None:
        """Return references the client got but never handed to the kernel."""
        with self._lock:
            self._queue_locked(handle, n)

    def _queue_locked(self, handle: int, n: int) -> None:
        if len(self._pending) >= _QUEUE_CAP:
            return
        first = not self._pending
        if first:
            self._pending_since = time.monotonic()
        self._pending[handle] = self._pending.get(handle, 0) + n
        # The sender may be waiting for its next ping (minutes away): the first forget of a
        # batch wakes it to time the batch, or a deleted file stays pinned on the host.
        if first or len(self._pending) >= BATCH_MAX:
            self._wake.notify()

    def held(self) -> int:
        """How many server handles this client holds references to."""
        with self._lock:
            return len(self._received)

    def reset(self) -> None:
        """The session was lost: its handles and pending forgets mean nothing any more."""
        with self._lock:
            self._received.clear()
            self._pending.clear()

    def touch(self) -> None:
        """Any call reached the server: no ping needed for a while."""
        self._last_activity = time.monotonic()

    # --- sending ------------------------------------------------------------------------------
    def flush(self) -> None:
        """Send every queued forget now (and wait for it)."""
        with self._lock:
            while self._sending:
                self._wake.wait(0.05)
            batch = self._take_locked()
        if batch:
            self._send(batch)

    def _take_locked(self) -> list[tuple[int, int]]:
        batch = list(self._pending.items())
        self._pending.clear()
        return batch

    def _send(self, batch: list[tuple[int, int]]) -> None:
        for i in range(0, len(batch), BATCH_MAX):
            try:
                self._send_forget(batch[i : i + BATCH_MAX])
            except OSError as exc:
                # A lost session forgets everything anyway; otherwise the server's bounds cap
                # what a lost batch can leak, so it is not retried.
                log.warning(
                    "forget of %d handles failed: %s",
                    len(batch[i : i + BATCH_MAX]),
                    errno.errorcode.get(exc.errno or 0, exc.errno),
                )

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping:
                    now = time.monotonic()
                    if self._pending and (
                        len(self._pending) >= BATCH_MAX or now - self._pending_since >= BATCH_DELAY
                    ):
                        break
                    if now - self._last_activity >= self._ping_interval:
                        break
                    timeout = self._ping_interval - (now - self._last_activity)
                    if self._pending:
                        timeout = min(timeout, BATCH_DELAY - (now - self._pending_since))
                    self._wake.wait(max(timeout, 0.001))
                if self._stopping:
                    return
                batch = self._take_locked()
                self._sending = True
            try:
                if batch:
                    self._send(batch)
                elif time.monotonic() - self._last_activity >= self._ping_interval:
                    try:
                        self._send_ping()
                    except OSError as exc:
                        log.warning(
                            "ping failed: %s", errno.errorcode.get(exc.errno or 0, exc.errno)
                        )
                    self.touch()
            finally:
                with self._lock:
                    self._sending = False
                    self._wake.notify_all()

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
