"""Answering for a dying program whose request the filesystem has not answered.

Once a worker has read a request, the kernel waits for its answer uninterruptibly: a fatal
signal only makes it send an INTERRUPT, and the program stays in D state until the answer
comes, however long the filesystem takes (a stopped or hung server: as long as a call may
last).  So for each interrupted request still being served, this watches its caller, and once
the caller is dying (a fatal signal turns into a pending SIGKILL on each of its threads)
answers EINTR for it.  The worker's own answer later finds the request gone, which the session
already handles.

A program that is merely signalled (SIGCHLD, SIGALRM, a profiler's timer) keeps waiting for
the real answer: answering EINTR to it would fail a write or an fsync that is still going on.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable

from .replies import error_frame

log = logging.getLogger(__name__)

SIGKILL_BIT = 1 << (9 - 1)

# How often the callers of interrupted requests are looked at: how long a killed program may
# wait beyond its kill.
CHECK_INTERVAL = 0.1


def dying(tid: int) -> bool:
    """Whether thread ``tid`` has a fatal signal pending (or is gone)."""
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                pending = line.startswith((b"SigPnd:", b"ShdPnd:"))
                if pending and int(line.split()[1], 16) & SIGKILL_BIT:
                    return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


class InterruptWatch:
    """Interrupted requests still being served, each with its caller's thread id.

    ``in_flight(unique)`` says whether the request is still being served; ``answer(unique,
    chunks)`` writes a reply for it to the device."""

    def __init__(
        self,
        in_flight: Callable[[int], bool],
        answer: Callable[[int, list[bytes]], None],
        is_dying: Callable[[int], bool] = dying,
    ):
        self._in_flight = in_flight
        self._answer = answer
        self._is_dying = is_dying
        self._watched: dict[int, int] = {}  # unique -> caller's tid
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._thread: threading.Thread | None = None

    def interrupted(self, unique: int, tid: int) -> None:
        with self._lock:
            if self._closed:
                return
            self._watched[unique] = tid
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="fuse-interrupts"
                )
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._watched and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                watched = list(self._watched.items())
            for unique, tid in watched:
                if not self._in_flight(unique):
                    self._forget(unique)
                elif self._is_dying(tid):
                    self._forget(unique)
                    log.info(
                        "request %d: its caller (thread %d) is dying: answered EINTR", unique, tid
                    )
                    self._answer(unique, error_frame(unique, errno.EINTR))
            with self._lock:
                if self._watched and not self._closed:
                    self._wake.wait(CHECK_INTERVAL)

    def _forget(self, unique: int) -> None:
        with self._lock:
            self._watched.pop(unique, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify()
