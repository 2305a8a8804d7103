"""Write-behind: a WRITE is answered to the kernel as soon as it is queued, and sent from here.

Waiting for each Write's round trip made a writer alternate between the VM's kernel, the client
and the server, each idle while another worked; queued, the next WRITE is read from /dev/fuse
while the previous ones travel, and up to ``senders`` of them are on the wire at once.

What keeps this as correct as a write that waited (the rules the client relies on):

- Order: a queued write starts only when it overlaps no earlier write of the same node still
  queued or in flight, so overlapping writes reach the host in the order the kernel sent them.
- Everything else comes after: the client calls ``drain()`` before any other request, so a read,
  stat, truncate, rename, flush or fsync sees every write the kernel was told had succeeded.
- Errors are never lost: a failed or short write is recorded against its node and raised, once
  per open file, by the next write or flush (close) of the open file that made it, and, apart
  from that, by the next fsync of any open file of the node (a program may fsync through another
  descriptor than the one it wrote through), as Linux reports writeback errors.  A write that
  reported it does not settle what fsync owes: a program that stops at a failed write and asks
  fsync whether the rest is safe must hear that earlier, acknowledged data was lost.
- Memory is bounded: past ``window`` bytes queued, ``submit`` waits for room.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("bridgefs.client")

DEFAULT_WINDOW = 8 << 20
DEFAULT_SENDERS = 2
MAX_QUEUED = 256  # small writes: bounds the queue's length as ``window`` bounds its bytes
# Errors of files never fsynced after they failed are kept for a later fsync of the node; past
# this many nodes the oldest are dropped, so a program that ignores errors cannot grow it.
MAX_ERRORS = 1024


@dataclass(slots=True)
class PendingWrite:
    node: object  # writes to one node are ordered by their ranges; errors are kept per node
    fh: int  # the open file it came through
    offset: int
    data: bytes
    send: Callable[[], int]  # performs the Write; returns the count written, raises OSError
    seq: int = 0

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(slots=True)
class NodeError:
    errno: int
    writers: set[int]  # open files whose writes failed: their write or flush reports it
    told: set[int]  # open files a write, flush or fsync reported it to
    synced: set[int]  # open files an fsync reported it to
    seen: bool = False  # an fsync reported it: later opens' fsyncs do not (Linux's errseq)

    def owed(self, fh: int, any_file: bool) -> bool:
        if any_file:
            return fh not in self.synced and (not self.seen or fh in self.writers)
        return fh in self.writers and fh not in self.told

    def tell(self, fh: int, any_file: bool) -> None:
        self.told.add(fh)
        if any_file:
            self.synced.add(fh)
            self.seen = True

    def failed_again(self, fh: int) -> None:
        """More data lost: every open file is owed the error again, by fsync at least."""
        self.writers.add(fh)
        self.told.discard(fh)
        self.synced.clear()
        self.seen = False


class WriteBehind:
    def __init__(self, *, window: int = DEFAULT_WINDOW, senders: int = DEFAULT_SENDERS):
        self.window = window
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queued: deque[PendingWrite] = deque()
        self._running: list[PendingWrite] = []
        self._bytes = 0  # queued and in flight
        self._seq = 0
        self._outstanding: set[int] = set()  # seqs queued or in flight
        self._errors: dict[object, NodeError] = {}
        self._closed = False
        self._threads = [
            threading.Thread(target=self._sender, name=f"bridgefs-write-{i}", daemon=True)
            for i in range(max(1, senders))
        ]
        for t in self._threads:
            t.start()

    # --- the caller's side ------------------------------------------------------------------
    def submit(self, write: PendingWrite) -> None:
        """Queue ``write``; waits while the window is full.  Raises the error of an earlier
        write through the same open file instead (the write is then not made)."""
        size = len(write.data)
        with self._lock:
            while True:
                err = self._take_locked(write.node, write.fh, any_file=False)
                if err is not None:
                    raise OSError(err, f"an earlier write failed: {errno.errorcode.get(err, err)}")
                if self._closed:
                    raise OSError(errno.ENOTCONN, "the connection is closed")
                fits = self._bytes == 0 or (
                    self._bytes + size <= self.window and len(self._queued) < MAX_QUEUED
                )
                if fits:
                    break
                self._changed.wait()
            self._seq += 1
            write.seq = self._seq
            self._outstanding.add(write.seq)
            self._queued.append(write)
            self._bytes += size
            self._changed.notify_all()

    @property
    def busy(self) -> bool:
        # Read without the lock: a writer on another thread may queue right after, and this
        # caller's request is then simply not ordered after that write, as it would not be if
        # the write had waited for its answer either.
        return bool(self._outstanding)

    def drain(self) -> None:
        """Wait until every write queued so far has been answered by the server (writes
        queued meanwhile by other threads are not waited for: a steady writer cannot starve
        this caller)."""
        with self._lock:
            upto = self._seq
            while self._outstanding and min(self._outstanding) <= upto:
                self._changed.wait()

    def take_error(self, node: object, fh: int, any_file: bool) -> int | None:
        """The errno of a failed write to ``node`` not yet reported to open file ``fh``: for a
        flush, only a write through ``fh`` itself, not yet reported by a write; for an fsync
        (``any_file``), any write not yet reported by an fsync of ``fh``."""
        with self._lock:
            return self._take_locked(node, fh, any_file)

    def _take_locked(self, node: object, fh: int, any_file: bool) -> int | None:
        rec = self._errors.get(node)
        if rec is None or not rec.owed(fh, any_file):
            return None
        rec.tell(fh, any_file)
        if rec.writers <= rec.synced:
            del self._errors[node]  # every file that wrote heard it from fsync: nothing is owed
        return rec.errno

    def close(self) -> None:
        """Stop the senders once the queue is empty (writes still queued are sent first)."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=5)

    # --- the senders --------------------------------------------------------------------------
    def _next_locked(self) -> PendingWrite | None:
        blocked: list[PendingWrite] = list(self._running)
        for i, w in enumerate(self._queued):
            if not any(b.node == w.node and b.offset < w.end and w.offset < b.end for b in blocked):
                del self._queued[i]
                return w
            blocked.append(w)
        return None

    def _sender(self) -> None:
        while True:
            with self._lock:
                while True:
                    write = self._next_locked()
                    if write is not None or (self._closed and not self._queued):
                        break
                    self._changed.wait()
                if write is None:
                    return
                self._running.append(write)
            err = 0
            try:
                written = write.send()
                if written < len(write.data):
                    err = errno.EIO  # the host wrote less without saying why
            except OSError as exc:
                err = exc.errno or errno.EIO
            except Exception:
                log.exception("write of %d bytes at %d failed", len(write.data), write.offset)
                err = errno.EIO
            with self._lock:
                self._running.remove(write)
                self._outstanding.discard(write.seq)
                self._bytes -= len(write.data)
                if err:
                    # The first error is the one reported: later ones are most often its echo.
                    rec = self._errors.pop(write.node, None) or NodeError(err, set(), set(), set())
                    rec.failed_again(write.fh)
                    self._errors[write.node] = rec  # the newest last: the oldest go first
                    while len(self._errors) > MAX_ERRORS:
                        del self._errors[next(iter(self._errors))]
                self._changed.notify_all()
