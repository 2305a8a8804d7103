"""A mounted filesystem at work: worker threads read requests from /dev/fuse, dispatch, reply.

Each worker reads its own clone of the device fd, so a slow request holds up only its own thread.
This module and device.py are the only ones that do I/O on the FUSE connection.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from . import abi, device, opcodes
from .dispatch import Dispatcher
from .filesystem import FileSystem
from .interrupts import InterruptWatch
from .negotiate import Tuning
from .replies import Reply

log = logging.getLogger(__name__)

# After a lazy unmount, how long processes still inside the mount are served before the
# connection is cut.
BUSY_GRACE_SECONDS = 2.0

# Workers are added while none is left reading (each request that waits on a slow or stopped
# server holds one), so that an INTERRUPT for a dying program can still be read, up to this
# many times the workers asked for.
MAX_WORKERS_FACTOR = 4

# Where fuse_in_header keeps the request's unique id.
UNIQUE = struct.Struct("<Q")
UNIQUE_OFFSET = 8
UNIQUE_END = UNIQUE_OFFSET + UNIQUE.size


class OpStats:
    """Requests of one opcode: how many and how long they took (ns), per worker, summed on read."""

    __slots__ = ("count", "nanos", "errors")

    def __init__(self) -> None:
        self.count = 0
        self.nanos = 0
        self.errors = 0


class Session:
    def __init__(
        self,
        fs: FileSystem,
        mountpoint: str,
        *,
        workers: int = 4,
        tuning: Tuning | None = None,
        options: device.MountOptions | None = None,
    ):
        self.fs = fs
        self.mountpoint = os.path.realpath(mountpoint)
        self.tuning = tuning or Tuning()
        self.options = options or device.MountOptions()
        if fs.read_only:
            self.options = dataclasses.replace(self.options, read_only=True)
        if not fs.opens:
            self.tuning = dataclasses.replace(self.tuning, atomic_o_trunc=False)
        self.dispatcher = Dispatcher(fs, self.tuning)
        self.worker_count = max(1, workers)
        self.ready = threading.Event()  # INIT answered
        self.finished = threading.Event()  # connection gone (unmounted, aborted, DESTROY)
        self._stop = threading.Event()
        self._fds: list[int] = []
        self._threads: list[threading.Thread] = []
        self._stats: list[dict[int, OpStats]] = []
        self._conn: int | None = None
        self._closed = False
        self.max_workers = self.worker_count * MAX_WORKERS_FACTOR
        self._idle = 0
        self._idle_lock = threading.Lock()
        # unique -> the device fd its request was read from: the kernel takes a request's answer
        # only on the clone that read it.
        self._serving: dict[int, int] = {}
        self.interrupts = InterruptWatch(self.dispatcher.in_flight, self._answer_early)
        self.dispatcher.on_interrupt = self.interrupts.interrupted

    # --- life cycle -----------------------------------------------------------------------------
    def start(self) -> Session:
        fd = device.mount(self.mountpoint, self.options)
        self._fds.append(fd)
        self._conn = device.connection_id(self.mountpoint)
        self._start_worker(fd)
        for _ in range(self.worker_count - 1):
            if not self._add_worker():
                break
        return self

    def _add_worker(self) -> bool:
        try:
            fd = device.clone(self._fds[0])
        except OSError as exc:
            log.warning("cannot clone /dev/fuse (%s): serving with %d readers", exc, len(self._fds))
            self.max_workers = len(self._fds)
            return False
        self._fds.append(fd)
        self._start_worker(fd)
        return True

    def _start_worker(self, fd: int) -> None:
        stats: dict[int, OpStats] = defaultdict(OpStats)
        self._stats.append(stats)
        t = threading.Thread(
            target=self._worker,
            args=(fd, stats),
            daemon=True,
            name=f"fuse-worker-{len(self._threads)}",
        )
        self._threads.append(t)
        t.start()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        return self.ready.wait(timeout)

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Mount and serve until SIGINT/SIGTERM or until unmounted elsewhere, then clean up.

        The signal handlers go in before the mount, so a signal never leaves a mount behind.
        """
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self._stop.set())
        self.start()
        if on_ready is not None and self.wait_ready():
            on_ready()
        self.serve_forever()

    def serve_forever(self) -> None:
        """Serve until stopped or until the filesystem is unmounted, then clean up."""
        try:
            while not (self._stop.is_set() or self.finished.is_set()):
                self._stop.wait(0.2)
        finally:
            self.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Unmount (lazily, with a warning, when busy) and stop the workers."""
        if self._closed:
            return
        self._closed = True
        if not self.finished.is_set() and device.is_mounted(self.mountpoint):
            try:
                device.unmount(self.mountpoint)
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    log.error("unmount of %s failed: %s", self.mountpoint, exc)
                log.warning(
                    "%s is busy: detaching it lazily; processes still using it are served "
                    "for %.0f s, then get ENOTCONN",
                    self.mountpoint,
                    BUSY_GRACE_SECONDS,
                )
                try:
                    device.unmount(self.mountpoint, lazy=True)
                except OSError as exc2:
                    log.error("lazy unmount of %s failed: %s", self.mountpoint, exc2)
                if not self.finished.wait(BUSY_GRACE_SECONDS) and self._conn is not None:
                    device.abort_connection(self._conn)
        elif self._conn is not None and not self.finished.is_set():
            device.abort_connection(self._conn)
        self.interrupts.close()
        deadline = time.monotonic() + 5
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
        try:
            self.fs.destroy()
        except Exception:
            log.exception("destroy failed")

    def __enter__(self) -> Session:
        self.start()
        if not self.wait_ready():
            self.close()
            raise TimeoutError(f"kernel did not send INIT for {self.mountpoint}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- notifications --------------------------------------------------------------------------
    def notify(self, chunks: list[bytes]) -> bool:
        """Send a notification (see notify.py).  False when the kernel knew nothing to drop."""
        if not self._fds:
            return False
        try:
            os.writev(self._fds[0], chunks)
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENODEV, errno.EBADF):
                log.warning("notification failed: %s", exc)
            return False

    # --- statistics -----------------------------------------------------------------------------
    def stats(self) -> dict[str, tuple[int, int, int]]:
        """opcode name -> (requests, total ns, errors), summed over workers."""
        total: dict[str, list[int]] = {}
        for per_worker in self._stats:
            for op, s in list(per_worker.items()):
                acc = total.setdefault(opcodes.name(op), [0, 0, 0])
                acc[0] += s.count
                acc[1] += s.nanos
                acc[2] += s.errors
        return {k: (v[0], v[1], v[2]) for k, v in total.items()}

    def reset_stats(self) -> None:
        for per_worker in self._stats:
            per_worker.clear()

    def count(self, opname: str) -> int:
        return self.stats().get(opname, (0, 0, 0))[0]

    # --- the request loop ---------------------------------------------------------------------
    def _worker(self, fd: int, stats: dict[int, OpStats]) -> None:
        buf = bytearray(self.tuning.max_write + 4096)
        view = memoryview(buf)
        while True:
            with self._idle_lock:
                self._idle += 1
            try:
                n = os.readv(fd, [buf])
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                    with self._idle_lock:
                        self._idle -= 1
                    continue  # ENOENT: the request was interrupted before we read it
                if exc.errno not in (errno.ENODEV, errno.EBADF):
                    log.error("reading /dev/fuse failed: %s", exc)
                break
            with self._idle_lock:
                self._idle -= 1
                grow = self._idle == 0 and len(self._fds) < self.max_workers and not self._closed
            if grow:
                self._add_worker()
            if n == 0:
                break
            self._serve(fd, view[:n], stats)
            if self.dispatcher.destroyed:
                break
        self.finished.set()

    def _serve(self, fd: int, raw: memoryview, stats: dict[int, OpStats]) -> None:
        started = time.perf_counter_ns()
        unique = UNIQUE.unpack_from(raw, UNIQUE_OFFSET)[0] if len(raw) >= UNIQUE_END else 0
        self._serving[unique] = fd
        try:
            out = self.dispatcher.respond(raw)
        finally:
            self._serving.pop(unique, None)
        # Counted before the reply goes out, so that whoever waits on the reply sees the count.
        s = stats[out.opcode]
        s.count += 1
        s.nanos += time.perf_counter_ns() - started
        s.errors += out.failed
        if out.chunks is not None:
            self._write(fd, out.chunks, out.reply)
        if out.opcode == abi.Op.INIT and not out.failed:
            # After the reply: the kernel lowers the read-ahead to the agreed max_readahead
            # (at most its own 128 KiB default) when it takes the INIT answer in.
            if self._conn is not None:
                device.set_readahead(self._conn, self.tuning.max_readahead)
            self.ready.set()

    def _answer_early(self, unique: int, chunks: list[bytes]) -> None:
        """An answer given in place of the worker still serving the request."""
        fd = self._serving.get(unique)
        if fd is not None:
            self._write(fd, chunks, None)

    def _write(self, fd: int, chunks: list[bytes], reply: Reply | None) -> None:
        try:
            os.writev(fd, chunks)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                # The request was interrupted and is gone: the kernel never saw these entries.
                self.dispatcher.uncount(reply)
            elif exc.errno not in (errno.ENODEV, errno.EBADF):
                log.error("writing a reply failed: %s", exc)
