"""Echo suppression: which host changes a session caused itself through the server.

A session's kernel already knows about its own mutations, so its Watch stream must not hear them
back.  The server tracks no paths, so a mutation is recorded by inode identity:

* An entry change (create, unlink, rename, link...) as (parent (st_dev, st_ino), name) with the
  change kinds it will be reported as.  Each expectation is used up by one matching change and
  then forgotten, so a host program that removes the file the session just created is still
  reported.  A creation also remembers the node it made: a CREATED of that name that finds
  another node there is a host program's, even if the session's own event never came.
* A node change (write, setattr, xattrs...) as the node's (st_dev, st_ino) and its stamp (ctime
  and friends) once the change is done.  A content or attribute change is an echo while the node
  still has that stamp (or the mutation is still running): a host edit a moment later changes
  ctime and gets through, however long the record lives.  Entry changes record the stamp of the
  node left under the name too, since creating a file also reports its mode fix-up, and
  truncating open reports a modification.  An entry change also changes the stamp of its
  directory, and of a node that keeps other links when one of its names goes: both are recorded
  too, or a change looked at after them (the watcher is behind) would find a stamp the session
  left but never recorded, and be sent back as news.

How long a change takes to come back depends on how far the watcher is behind, which under load
(an unpack of thousands of files on a busy host) is many seconds.  So records do not expire by a
short wall-clock time: an expectation lasts until its change comes, and ``TTL`` is only the safety
net for changes the watcher never reports (a file made and removed inside a directory before
the watcher saw the directory).  At most ``LIMIT`` records are kept; past that the expired go
first, then the oldest node records (a lost one costs at worst an echoed modification), and the
oldest expectations only last.  Nothing is recorded while the session has no Watch stream.
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self, TypeVar

from bridgefs.change_kinds import ChangeKind
from bridgefs.server import at
from bridgefs.server.confine import Name, Refused, check_name

TTL = 120.0
LIMIT = 1 << 16
STAMPS = 4

CREATED, DELETED, MOVED = ChangeKind.CREATED, ChangeKind.DELETED, ChangeKind.MOVED
_ADD = frozenset((CREATED,))
_REMOVE = frozenset((DELETED,))
# A rename is reported as MOVED, or as DELETED + CREATED when the observer could not pair it.
_MOVE = frozenset((MOVED, DELETED, CREATED))


Key = tuple[int, int]  # (st_dev, st_ino) of a node
Stamp = tuple[int, int, int, int, int]  # what stamp_of gives
NameKey = tuple[int, int, bytes]  # (st_dev, st_ino) of a directory, and a name in it
_K = TypeVar("_K")
_V = TypeVar("_V")


def stamp_of(st: os.stat_result) -> Stamp:
    # ctime moves on every change of the inode; the rest tells two changes in one clock tick apart.
    return (st.st_ctime_ns, st.st_mtime_ns, st.st_size, st.st_nlink, st.st_mode)


def key_of(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino)


@dataclass(slots=True)
class Probe:
    """What the watcher learnt about one change, computed once for every session.

    ``entries``: (parent key, name) of each name the change is about (two for MOVED), the key
    None when the parent directory cannot be found any more;
    ``node``: (key, stamp) of what the path names now, None if nothing."""

    kind: int
    entries: tuple[tuple[Key | None, bytes], ...] = ()
    node: tuple[Key, Stamp] | None = None


class _Node:
    # The last few stamps this session left the node with: the watcher stats a node some time
    # before it asks, so a change can be looked at with the stamp of one of the session's
    # earlier changes while the next one already ended.  A host's change never has one of them.
    __slots__ = ("pending", "stamps", "expires")

    def __init__(self) -> None:
        self.pending, self.expires = 0, 0.0
        self.stamps: tuple[Stamp, ...] = ()


class _Expect:
    """One mutation's change(s) not seen yet: ``count`` changes of one of ``kinds``; ``node``
    is the key of the node a creation made (None: any)."""

    __slots__ = ("kinds", "count", "node")

    def __init__(self, kinds: frozenset[int], count: int):
        self.kinds, self.count = kinds, count
        self.node: Key | None = None


class _Name:
    __slots__ = ("expect", "expires")

    def __init__(self) -> None:
        self.expect: list[_Expect] = []
        self.expires = 0.0


class _NoOp:
    """What recording returns while the session does not watch."""

    __slots__ = ()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def cancel(self) -> None:
        pass


_NOOP = _NoOp()


class EchoLog:
    def __init__(
        self, ttl: float = TTL, limit: int = LIMIT, clock: Callable[[], float] = time.monotonic
    ):
        self.ttl, self.limit, self.clock = ttl, limit, clock
        self._lock = threading.Lock()
        self._watching = 0
        self._nodes: dict[Key, _Node] = {}
        self._names: dict[NameKey, _Name] = {}
        # name -> keys of _names with that name: a change whose directory is gone already is
        # matched by name alone, and a removed tree reports thousands of those.
        self._by_name: dict[bytes, set[NameKey]] = {}
        self._next_sweep = 0.0
        self.evicted = 0  # records dropped to stay within the limit before their change came

    def watching(self, on: bool) -> None:
        """A Watch stream of this session opened (True) or closed (False)."""
        with self._lock:
            self._watching += 1 if on else -1
            if not self._watching:
                self._nodes.clear()
                self._names.clear()
                self._by_name.clear()

    @property
    def recording(self) -> bool:
        return self._watching > 0

    def __bool__(self) -> bool:
        return bool(self._nodes or self._names)

    def __len__(self) -> int:
        return len(self._nodes) + len(self._names)

    # --- recording: LocalFs wraps each mutation in one of these ------------------------------
    def added(self, dirfd: int, name: bytes) -> _EntryOp | _NoOp:
        """A name made; ``cancel()`` on the result when the name existed already (an open with
        O_CREAT of an existing file): no change will be reported for it."""
        return _EntryOp(self, ((dirfd, name, _ADD, 1),)) if self._watching else _NOOP

    def removed(self, dirfd: int, name: bytes) -> _EntryOp | _NoOp:
        return _EntryOp(self, ((dirfd, name, _REMOVE, 1),)) if self._watching else _NOOP

    def moved(
        self, olddir: int, name: bytes, newdir: int, new_name: bytes, exchange: bool
    ) -> _EntryOp | _NoOp:
        n = 2 if exchange else 1  # an exchange is reported as two moves
        return (
            _EntryOp(self, ((olddir, name, _MOVE, n), (newdir, new_name, _MOVE, n)))
            if self._watching
            else _NOOP
        )

    def node(self, fd: int) -> _NodeOp | _NoOp:
        """A change of the inode behind ``fd`` itself."""
        return _NodeOp(self, fd) if self._watching else _NOOP

    def closing(self, fd: int) -> _NodeOp | _NoOp:
        """A close of ``fd``: reported as a change only when it was open for writing."""
        if not self._watching:
            return _NOOP
        try:
            writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
        except OSError:
            return _NOOP
        return _NodeOp(self, fd) if writable else _NOOP

    # --- the tables (under the lock) ---------------------------------------------------------
    def _get(self, table: dict[_K, _V], key: _K, cls: Callable[[], _V]) -> _V:
        rec = table.get(key)
        if rec is None:
            now = self.clock()
            if now >= self._next_sweep or len(self._nodes) + len(self._names) >= self.limit:
                self._trim(now)
            rec = table[key] = cls()
        return rec

    def _drop_name(self, key: NameKey) -> None:
        del self._names[key]
        keys = self._by_name.get(key[2])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_name[key[2]]

    def _trim(self, now: float) -> None:
        self._next_sweep = now + self.ttl / 4
        for key in [k for k, r in self._nodes.items() if r.expires < now and not r.pending]:
            del self._nodes[key]
        for name_key in [k for k, r in self._names.items() if r.expires < now]:
            self._drop_name(name_key)
        # Still full: down to three quarters at once, so this runs once per limit/4 records.
        # Node records go first: losing one costs at worst an echoed modification, losing an
        # expectation an echoed creation or deletion.
        excess = len(self._nodes) + len(self._names) - self.limit * 3 // 4
        if excess <= 0:
            return
        nodes = [k for k, r in self._nodes.items() if not r.pending][:excess]
        names = list(self._names)[: excess - len(nodes)]
        for key in nodes:
            del self._nodes[key]
        for name_key in names:
            self._drop_name(name_key)
        self.evicted += len(nodes) + len(names)

    def _expect(self, key: NameKey, kinds: frozenset[int], n: int) -> _Expect:
        with self._lock:
            rec = self._get(self._names, key, _Name)
            self._by_name.setdefault(key[2], set()).add(key)
            item = _Expect(kinds, n)
            rec.expect.append(item)
            rec.expires = self.clock() + self.ttl
            return item

    def _unexpect(self, key: NameKey, item: _Expect) -> None:
        # The mutation failed or changed nothing: it will not be reported, so nothing may be
        # swallowed for it.
        with self._lock:
            rec = self._names.get(key)
            if rec is None:
                return
            rec.expect = [e for e in rec.expect if e is not item]
            if not rec.expect:
                self._drop_name(key)

    def _made(self, item: _Expect, node: Key) -> None:
        with self._lock:
            item.node = node

    def _node_begin(self, key: Key) -> None:
        with self._lock:
            self._get(self._nodes, key, _Node).pending += 1

    def _node_end(self, key: Key, stamp: Stamp | None, counted: bool = True) -> None:
        with self._lock:
            if not self._watching:
                return
            rec = self._get(self._nodes, key, _Node)
            if counted and rec.pending:
                rec.pending -= 1
            if stamp is not None and stamp not in rec.stamps:
                rec.stamps = (*rec.stamps[-(STAMPS - 1) :], stamp)
            rec.expires = self.clock() + self.ttl

    # --- matching: the watcher asks once per change and session -------------------------------
    def _lookup_names(self, pkey: Key | None, name: bytes) -> list[NameKey]:
        if pkey is not None:
            key = (pkey[0], pkey[1], name)
            return [key] if key in self._names else []
        # The directory is gone by the time the change is looked at (the session removed or
        # moved it right after): its name alone has to do.
        return list(self._by_name.get(name, ()))

    def is_echo(self, probe: Probe) -> bool:
        now = self.clock()
        with self._lock:
            if probe.kind in (CREATED, DELETED, MOVED):
                hit = False
                for pkey, name in probe.entries:  # a move uses up both of its names
                    for key in self._lookup_names(pkey, name):
                        if self._use(key, probe.kind, probe.node, now):
                            hit = True
                            break
                return hit
            if probe.node is None:  # gone already: a change of the name still expected decides
                return any(
                    self._names[key].expires >= now
                    for pkey, name in probe.entries
                    for key in self._lookup_names(pkey, name)
                )
            node_key, stamp = probe.node
            rec = self._nodes.get(node_key)
            return rec is not None and (
                rec.pending > 0 or (rec.expires >= now and stamp in rec.stamps)
            )

    def _made_here(self, item: _Expect, node: tuple[Key, Stamp] | None) -> bool:
        """Whether the node a CREATED finds under the name (None: nothing any more, which
        cannot be told apart) is the one ``item``'s creation made and nobody else touched since:
        an inode number is soon reused, its stamp is not."""
        if node is None or item.node is None:
            return True
        key, stamp = node
        if item.node != key:
            return False
        rec = self._nodes.get(key)
        return rec is None or rec.pending > 0 or stamp in rec.stamps

    def _use(self, key: NameKey, kind: int, node: tuple[Key, Stamp] | None, now: float) -> bool:
        """Use up one expectation of ``kind`` (the oldest): the next change of this name is
        news.  A creation is this session's only if the node under the name is the one it
        made."""
        rec = self._names[key]
        if rec.expires < now:
            self._drop_name(key)
            return False
        for item in rec.expect:
            if kind in item.kinds and (kind != CREATED or self._made_here(item, node)):
                item.count -= 1
                if item.count <= 0:
                    rec.expect.remove(item)
                    if not rec.expect:
                        self._drop_name(key)
                return True
        return False


class _EntryOp:
    __slots__ = ("log", "items", "keys", "dirs", "kept")

    def __init__(self, log: EchoLog, items: tuple[tuple[int, bytes, frozenset[int], int], ...]):
        self.log, self.items = log, items
        self.keys: list[tuple[NameKey, int, bytes, frozenset[int], _Expect]] = []
        self.dirs: list[tuple[int, Key]] = []  # (dirfd, key) of each directory changed
        self.kept: list[tuple[int, Key]] = []  # (O_PATH fd, key) of nodes losing one name

    def __enter__(self) -> Self:
        # Expected before the syscall, as the watcher may see the change before it returns.
        # Bookkeeping never fails a mutation: a directory that cannot be stat'ed is not recorded.
        for dirfd, name, kinds, n in self.items:
            try:
                dkey = key_of(os.fstat(dirfd))
            except OSError:
                continue
            key = (dkey[0], dkey[1], name)
            self.keys.append((key, dirfd, name, kinds, self.log._expect(key, kinds, n)))
            # The directory's stamp changes too: pending until its new stamp is known.
            self.log._node_begin(dkey)
            self.dirs.append((dirfd, dkey))
            if kinds is not _ADD:
                self._keep(dirfd, name)
        return self

    def _keep(self, dirfd: int, name: bytes) -> None:
        """A node with other links survives losing ``name`` with a new stamp (nlink, ctime), and
        no name of it is looked at afterwards: hold it by an O_PATH fd to learn that stamp."""
        checked = _component(name)
        if checked is None:
            return
        try:
            st = at.stat(dirfd, checked)
            if stat.S_ISDIR(st.st_mode) or st.st_nlink < 2:
                return
            fd = at.lookup(dirfd, checked)
        except (OSError, ValueError):
            return
        try:
            key = key_of(os.fstat(fd))
        except OSError:
            os.close(fd)
            return
        self.log._node_begin(key)
        self.kept.append((fd, key))

    def cancel(self) -> None:
        for key, _, _, _, item in self.keys:
            self.log._unexpect(key, item)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        for key, dirfd, name, kinds, item in self.keys:
            if exc_type is not None:
                self.log._unexpect(key, item)
            # Whatever is under the name now is this session's doing.  Only a valid single
            # component is looked at: a client's name is never resolved as a path.
            checked = _component(name)
            if checked is None:
                continue
            try:
                st = at.stat(dirfd, checked)
            except (OSError, ValueError):
                continue
            if kinds is _ADD and exc_type is None:
                self.log._made(item, key_of(st))
            self.log._node_end(key_of(st), stamp_of(st), counted=False)
        for fd, node_key in self.kept:
            try:
                stamp: Stamp | None = stamp_of(os.fstat(fd))
            except OSError:
                stamp = None
            finally:
                os.close(fd)
            self.log._node_end(node_key, stamp)
        for dirfd, dkey in self.dirs:
            try:
                stamp = stamp_of(os.fstat(dirfd))
            except OSError:
                stamp = None
            self.log._node_end(dkey, stamp)


def _component(name: bytes) -> Name | None:
    try:
        return check_name(name)
    except Refused:
        return None


class _NodeOp:
    __slots__ = ("log", "fd", "key")

    def __init__(self, log: EchoLog, fd: int):
        self.log, self.fd = log, fd
        self.key: Key | None = None

    def __enter__(self) -> Self:
        try:
            self.key = key_of(os.fstat(self.fd))
        except OSError:
            self.key = None
            return self
        self.log._node_begin(self.key)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.key is None:
            return
        try:
            stamp = stamp_of(os.fstat(self.fd))
        except OSError:
            stamp = None
        self.log._node_end(self.key, stamp)
