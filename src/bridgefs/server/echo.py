"""Echo suppression: which host changes a session caused itself through the server.

A session's kernel already knows about its own mutations, so its Watch stream must not hear them
back.  The server tracks no paths, so a mutation is recorded by inode identity:

* An entry change (create, unlink, rename, link...) as (parent (st_dev, st_ino), name) with the
  change kinds it will be reported as.  Each expectation is used up by one matching change, so a
  host program that removes the file the session just created is still reported.
* A node change (write, setattr, xattrs...) as the node's (st_dev, st_ino) and its stamp (ctime
  and friends) once the change is done.  A content or attribute change is an echo while the node
  still has that stamp (or the mutation is still running): a host edit a moment later changes
  ctime and gets through.  Entry changes record the stamp of the node left under the name too,
  since creating a file also reports its mode fix-up, and truncating open reports a modification.

Records live ``TTL`` seconds and at most ``LIMIT`` are kept; a lost one only costs an echo.
Nothing is recorded while the session has no Watch stream.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from dataclasses import dataclass

from bridgefs.rpc import pb

TTL = 2.0
LIMIT = 8192

CREATED, DELETED, MOVED = pb.Change.CREATED, pb.Change.DELETED, pb.Change.MOVED
_ADD = frozenset((CREATED,))
_REMOVE = frozenset((DELETED,))
# A rename is reported as MOVED, or as DELETED + CREATED when the observer could not pair it.
_MOVE = frozenset((MOVED, DELETED, CREATED))
_NOOP = contextlib.nullcontext()


def stamp_of(st: os.stat_result) -> tuple:
    # ctime moves on every change of the inode; the rest tells two changes in one clock tick apart.
    return (st.st_ctime_ns, st.st_mtime_ns, st.st_size, st.st_nlink, st.st_mode)


def key_of(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


@dataclass(slots=True)
class Probe:
    """What the watcher learnt about one change, computed once for every session.

    ``entries``: (parent key, name) of each name the change is about (two for MOVED), the key
    None when the parent directory cannot be found any more;
    ``node``: (key, stamp) of what the path names now, None if nothing."""

    kind: int
    entries: tuple = ()
    node: tuple | None = None


class _Node:
    __slots__ = ("pending", "stamp", "expires")

    def __init__(self):
        self.pending, self.stamp, self.expires = 0, None, 0.0


class _Name:
    __slots__ = ("expect", "expires")

    def __init__(self):
        self.expect: list = []  # [kinds, count] per mutation not yet seen
        self.expires = 0.0


class EchoLog:
    def __init__(self, ttl: float = TTL, limit: int = LIMIT, clock=time.monotonic):
        self.ttl, self.limit, self.clock = ttl, limit, clock
        self._lock = threading.Lock()
        self._watching = 0
        self._nodes: dict[tuple, _Node] = {}
        self._names: dict[tuple, _Name] = {}

    def watching(self, on: bool) -> None:
        """A Watch stream of this session opened (True) or closed (False)."""
        with self._lock:
            self._watching += 1 if on else -1
            if not self._watching:
                self._nodes.clear()
                self._names.clear()

    @property
    def recording(self) -> bool:
        return self._watching > 0

    def __bool__(self) -> bool:
        return bool(self._nodes or self._names)

    def __len__(self) -> int:
        return len(self._nodes) + len(self._names)

    # --- recording: LocalFs wraps each mutation in one of these ------------------------------
    def added(self, dirfd: int, name: bytes):
        return _EntryOp(self, ((dirfd, name, _ADD, 1),)) if self._watching else _NOOP

    def removed(self, dirfd: int, name: bytes):
        return _EntryOp(self, ((dirfd, name, _REMOVE, 1),)) if self._watching else _NOOP

    def moved(self, olddir: int, name: bytes, newdir: int, new_name: bytes, exchange: bool):
        n = 2 if exchange else 1  # an exchange is reported as two moves
        return _EntryOp(self, ((olddir, name, _MOVE, n), (newdir, new_name, _MOVE, n))) \
            if self._watching else _NOOP

    def node(self, fd: int):
        """A change of the inode behind ``fd`` itself."""
        return _NodeOp(self, fd) if self._watching else _NOOP

    def closing(self, fd: int):
        """A close of ``fd``: reported as a change only when it was open for writing."""
        if not self._watching:
            return _NOOP
        try:
            writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
        except OSError:
            return _NOOP
        return _NodeOp(self, fd) if writable else _NOOP

    def _get(self, table: dict, key: tuple, cls):
        rec = table.get(key)
        if rec is None:
            if len(self._nodes) + len(self._names) >= self.limit:
                self._trim()
            rec = table[key] = cls()
        return rec

    def _trim(self) -> None:
        # Down to three quarters at once, so the sweep runs once per limit/4 new records.
        now = self.clock()
        for table in (self._nodes, self._names):
            for key in [k for k, r in table.items()
                        if r.expires < now and not getattr(r, "pending", 0)]:
                del table[key]
        while len(self._nodes) + len(self._names) > self.limit * 3 // 4:  # oldest first
            table = self._names if len(self._names) >= len(self._nodes) else self._nodes
            del table[next(iter(table))]

    def _expect(self, key: tuple, kinds: frozenset, n: int) -> None:
        with self._lock:
            rec = self._get(self._names, key, _Name)
            rec.expect = [item for item in rec.expect if item[1] > 0]
            rec.expect.append([kinds, n])
            rec.expires = self.clock() + self.ttl

    def _unexpect(self, key: tuple, kinds: frozenset, n: int) -> None:
        # The mutation failed: it will not be reported, so nothing may be swallowed for it.
        with self._lock:
            rec = self._names.get(key)
            for item in rec.expect if rec else ():
                if item[0] is kinds:
                    item[1] -= n
                    break

    def _node_begin(self, key: tuple) -> None:
        with self._lock:
            self._get(self._nodes, key, _Node).pending += 1

    def _node_end(self, key: tuple, stamp, counted: bool = True) -> None:
        with self._lock:
            if not self._watching:
                return
            rec = self._get(self._nodes, key, _Node)
            if counted and rec.pending:
                rec.pending -= 1
            if stamp is not None:
                rec.stamp = stamp
            rec.expires = self.clock() + self.ttl

    # --- matching: the watcher asks once per change and session -------------------------------
    def _lookup_names(self, pkey, name: bytes) -> list:
        if pkey is not None:
            rec = self._names.get((*pkey, name))
            return [rec] if rec is not None else []
        # The directory is gone by the time the change is looked at (the session removed or
        # moved it right after): its name alone has to do.
        return [rec for key, rec in self._names.items() if key[2] == name]

    def is_echo(self, probe: Probe) -> bool:
        now = self.clock()
        with self._lock:
            if probe.kind in (CREATED, DELETED, MOVED):
                hit = False
                for pkey, name in probe.entries:  # a move uses up both of its names
                    hit = any(rec.expires >= now and _use(rec, probe.kind)
                              for rec in self._lookup_names(pkey, name)) or hit
                return hit
            if probe.node is None:  # gone already: the name's own recent change decides
                return any(rec.expires >= now for pkey, name in probe.entries
                           for rec in self._lookup_names(pkey, name))
            key, stamp = probe.node
            rec = self._nodes.get(key)
            return rec is not None and (rec.pending > 0 or (rec.expires >= now
                                                            and rec.stamp == stamp))


def _use(rec: _Name, kind: int) -> bool:
    """Use up one expectation of ``kind``: the next change of this name is news."""
    for item in rec.expect:
        if item[1] > 0 and kind in item[0]:
            item[1] -= 1
            return True
    return False


class _EntryOp:
    __slots__ = ("log", "items", "keys")

    def __init__(self, log: EchoLog, items):
        self.log, self.items, self.keys = log, items, []

    def __enter__(self):
        # Expected before the syscall, as the watcher may see the change before it returns.
        # Bookkeeping never fails a mutation: a directory that cannot be stat'ed is not recorded.
        for dirfd, name, kinds, n in self.items:
            try:
                key = (*key_of(os.fstat(dirfd)), name)
            except OSError:
                continue
            self.log._expect(key, kinds, n)
            self.keys.append((key, dirfd, name, kinds, n))

    def __exit__(self, exc_type, exc, tb):
        for key, dirfd, name, kinds, n in self.keys:
            if exc_type is not None:
                self.log._unexpect(key, kinds, n)
            # Whatever is under the name now is this session's doing.  Only a valid single
            # component is looked at: a client's name is never resolved as a path.
            if not name or b"/" in name or name in (b".", b".."):
                continue
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except (OSError, ValueError):
                continue
            self.log._node_end(key_of(st), stamp_of(st), counted=False)


class _NodeOp:
    __slots__ = ("log", "fd", "key")

    def __init__(self, log: EchoLog, fd: int):
        self.log, self.fd = log, fd

    def __enter__(self):
        try:
            self.key = key_of(os.fstat(self.fd))
        except OSError:
            self.key = None
            return
        self.log._node_begin(self.key)

    def __exit__(self, *exc):
        if self.key is None:
            return
        try:
            stamp = stamp_of(os.fstat(self.fd))
        except OSError:
            stamp = None
        self.log._node_end(self.key, stamp)
