"""Fit the per-session bounds into the process's descriptor limit, and share it fairly.

Every node a session holds is an O_PATH descriptor and every open file or directory one or two
more, all from one process-wide RLIMIT_NOFILE.  If the sessions' bounds add up to more than the
limit, one session can take the descriptors every other session's handshake needs (EMFILE for
all).  So the limit, less a reserve for sockets, the watcher and calls in flight, is shared out by
a ``DescriptorPool``: a quarter of it is guaranteed, an equal part to every session the server
admits (present or still to come), and the rest is lent to whichever sessions need more.  A session
may hold its guarantee plus all that is lent (that sum is what the handshake advertises as
``max_nodes`` and what the tables enforce), but borrowing never touches another session's
guarantee: a session that takes all it can leaves every other session its share, and gets ENFILE
itself.  When the limit is too small to guarantee every session a useful share, fewer sessions
are admitted.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import threading

from bridgefs.server.handles import FDS_PER_OPEN, Limits

log = logging.getLogger("bridgefs.server")

MIN_GUARANTEE = 128  # descriptors every session is sure of: a shell's and an editor's worth
GUARANTEED = 4  # 1/GUARANTEED of the room is guaranteed; the rest is lent


def reserve(threads: int) -> int:
    """Descriptors kept out of every session's reach: listeners, connections, the watcher's
    inotify descriptors, shares' roots, and a few per thread for calls in flight."""
    return 2048 + 4 * threads


def room_of(threads: int, soft: int | None = None) -> int | None:
    """Descriptors the sessions may share; None without a limit."""
    if soft is None:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return None
    return max(0, soft - reserve(threads))


def fit(limits: Limits, threads: int, soft: int | None = None) -> Limits:
    """``limits`` with max_sessions, max_nodes and max_open lowered to what a DescriptorPool
    of this process's descriptor limit (or ``soft``) can honour."""
    room = room_of(threads, soft)
    if room is None:
        return limits
    sessions = max(1, min(limits.max_sessions, room // (GUARANTEED * MIN_GUARANTEE)))
    cap = DescriptorPool(room, sessions).cap
    max_open = max(1, min(limits.max_open, cap // (4 * FDS_PER_OPEN)))
    max_nodes = max(1, min(limits.max_nodes, cap))
    fitted = dataclasses.replace(
        limits,
        max_sessions=sessions,
        max_client_sessions=min(limits.max_client_sessions, sessions),
        max_nodes=max_nodes,
        max_open=max_open,
    )
    if fitted != limits:
        log.info(
            "%d descriptors for sessions: %d sessions of at most %d nodes and %d open files "
            "each (asked for %d, %d and %d; raise `ulimit -Hn` for more)",
            room,
            sessions,
            max_nodes,
            max_open,
            limits.max_sessions,
            limits.max_nodes,
            limits.max_open,
        )
    return fitted


class DescriptorPool:
    """``room`` descriptors for ``sessions`` sessions: each is sure of ``guarantee``, and may
    borrow from what is left up to ``cap`` in all."""

    def __init__(self, room: int, sessions: int):
        self.room = room
        self.guarantee = max(1, room // (GUARANTEED * max(1, sessions)))
        self.lendable = max(0, room - self.guarantee * sessions)
        self.cap = self.guarantee + self.lendable
        self._lock = threading.Lock()
        self.lent = 0

    def account(self) -> Account:
        return Account(self)

    def _borrow(self, n: int) -> bool:
        with self._lock:
            if self.lent + n > self.lendable:
                return False
            self.lent += n
            return True

    def _repay(self, n: int) -> None:
        with self._lock:
            self.lent -= n


class Account:
    """One session's descriptors in a pool."""

    def __init__(self, pool: DescriptorPool):
        self.pool = pool
        self._lock = threading.Lock()
        self.held = 0
        self.borrowed = 0

    def take(self, n: int) -> bool:
        """Room for ``n`` more descriptors: False when the session is at its cap or the lent
        part is all in use (by it or others)."""
        with self._lock:
            own = max(0, min(n, self.pool.guarantee - self.held))
            extra = n - own
            if extra and (self.held + n > self.pool.cap or not self.pool._borrow(extra)):
                return False
            self.held += n
            self.borrowed += extra
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.held -= n
            repay = self.borrowed - max(0, self.held - self.pool.guarantee)
            if repay > 0:
                self.borrowed -= repay
        if repay > 0:
            self.pool._repay(repay)

    def close(self) -> None:
        with self._lock:
            repay, self.borrowed, self.held = self.borrowed, 0, 0
        if repay:
            self.pool._repay(repay)
