"""Echo suppression: which host changes a session caused itself through the server.

A session's kernel already knows about its own mutations, so its Watch stream must not hear them
back.  The server tracks no paths, so a mutation is recorded by inode identity:

* An entry change (create, unlink, rename, link...) as (parent (st_dev, st_ino), name) with the
  change kinds it will be reported as.  Each expectation is used up by one matching change and
  then forgotten, so a host program that removes the file the session just created is still
  reported.  A creation also remembers the node it made: a CREATED of that name that finds
  another node there is a host program's, even if the session's own event never came.
* A node change (write, setattr, xattrs...) as the node's (st_dev, st_ino) and the state it left
  the node in (its stamp: ctime and friends, as the server fstats it when the call is done).  A
  content or attribute change is an echo while the node is still in the state the session's last
  call left it in (or one of its calls is still running): a host edit changes ctime and gets
  through, however long after.  The watcher stats a node a moment before it asks: a stamp that
  is not the last one is looked at again, under the log's lock, so a call of the session ending
  in between cannot make its own change look like news.  The session also knows what state it
  left a node in when it next changes it: found in another state (a host or another session
  changed it, and that change may not have been looked at yet), the next change of the node is
  news even if the session's own call has left the node as it last saw it.  Entry changes record
  the stamp of the node left under the name too, since creating a file also reports its mode
  fix-up, and truncating open reports a modification.  An entry change also changes the stamp of
  its directory, and of a node that keeps other links when one of its names goes: both are
  recorded too.

How long a change takes to come back depends on how far the watcher is behind, which under load
(an unpack of thousands of files on a busy host) is many seconds or minutes.  So nothing expires
by time: an expectation lasts until its change comes (or a change of its name that is news
shows it will never come: made inside a directory before the watcher saw the directory), a node
record as long as there is room.  At most ``LIMIT`` records are kept; past that, with a log line,
the least recently used node records go first (a lost one costs at worst an echoed
modification, which the client replays harmlessly), the oldest expectations only last.  Nothing
is recorded while the session has no Watch stream.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from bridgefs.server.echo_ops import (
    ADD,
    CREATED,
    DELETED,
    MOVE,
    MOVED,
    NOOP,
    REMOVE,
    EntryOp,
    Expect,
    NodeOp,
    NoOp,
)
from bridgefs.server.echo_ops import Key as Key
from bridgefs.server.echo_ops import NameKey as NameKey
from bridgefs.server.echo_ops import Stamp as Stamp
from bridgefs.server.echo_ops import key_of as key_of
from bridgefs.server.echo_ops import stamp_of as stamp_of

LIMIT = 1 << 16

log = logging.getLogger("bridgefs.server")

_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(slots=True)
class Probe:
    """What the watcher learnt about one change, computed once for every session.

    ``entries``: (parent key, name) of each name the change is about (two for MOVED), the key
    None when the parent directory cannot be found any more;
    ``node``: (key, stamp) of what the path names now, None if nothing;
    ``again``: stats the path once more, for a stamp that may have been taken too early."""

    kind: int
    entries: tuple[tuple[Key | None, bytes], ...] = ()
    node: tuple[Key, Stamp] | None = None
    again: Callable[[], tuple[Key, Stamp] | None] | None = None


class _Node:
    """``last``: the stamp the session's last call left the node with; ``seen``: the last stamp a
    change sent to the session as news found; ``foreign``: a call of the session found the node
    in neither state, so someone else changed it and the next change looked at is news."""

    __slots__ = ("pending", "last", "seen", "foreign")

    def __init__(self) -> None:
        self.pending = 0
        self.last: Stamp | None = None
        self.seen: Stamp | None = None
        self.foreign = False


class _Name:
    __slots__ = ("expect",)

    def __init__(self) -> None:
        self.expect: list[Expect] = []


class EchoLog:
    def __init__(self, limit: int = LIMIT):
        self.limit = limit
        self._lock = threading.Lock()
        self._watching = 0
        self._nodes: dict[Key, _Node] = {}
        self._names: dict[NameKey, _Name] = {}
        # name -> keys of _names with that name: a change whose directory is gone already is
        # matched by name alone, and a removed tree reports thousands of those.
        self._by_name: dict[bytes, set[NameKey]] = {}
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
    def added(self, dirfd: int, name: bytes) -> EntryOp | NoOp:
        """A name made; ``cancel()`` on the result when the name existed already (an open with
        O_CREAT of an existing file): no change will be reported for it."""
        return EntryOp(self, ((dirfd, name, ADD, 1),)) if self._watching else NOOP

    def removed(self, dirfd: int, name: bytes) -> EntryOp | NoOp:
        return EntryOp(self, ((dirfd, name, REMOVE, 1),)) if self._watching else NOOP

    def moved(
        self, olddir: int, name: bytes, newdir: int, new_name: bytes, exchange: bool
    ) -> EntryOp | NoOp:
        n = 2 if exchange else 1  # an exchange is reported as two moves
        return (
            EntryOp(self, ((olddir, name, MOVE, n), (newdir, new_name, MOVE, n)))
            if self._watching
            else NOOP
        )

    def node(self, fd: int) -> NodeOp | NoOp:
        """A change of the inode behind ``fd`` itself."""
        return NodeOp(self, fd) if self._watching else NOOP

    def closing(self, fd: int) -> NodeOp | NoOp:
        """A close of ``fd``: reported as a change only when it was open for writing."""
        if not self._watching:
            return NOOP
        try:
            writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
        except OSError:
            return NOOP
        return NodeOp(self, fd) if writable else NOOP

    # --- the tables (under the lock) ---------------------------------------------------------
    def _get(self, table: dict[_K, _V], key: _K, cls: Callable[[], _V]) -> _V:
        rec = table.pop(key, None)  # put back at the end: the table is oldest use first
        if rec is None:
            if len(self._nodes) + len(self._names) >= self.limit:
                self._trim()
            rec = cls()
        table[key] = rec
        return rec

    def _drop_name(self, key: NameKey) -> None:
        del self._names[key]
        keys = self._by_name.get(key[2])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_name[key[2]]

    def _trim(self) -> None:
        # Down to three quarters at once, so this runs once per limit/4 records.  Node records
        # go first: losing one costs at worst an echoed modification, losing an expectation an
        # echoed creation or deletion.
        excess = len(self._nodes) + len(self._names) - self.limit * 3 // 4
        nodes = [k for k, r in self._nodes.items() if not r.pending][:excess]
        names = list(self._names)[: excess - len(nodes)]
        for key in nodes:
            del self._nodes[key]
        for name_key in names:
            self._drop_name(name_key)
        self.evicted += len(nodes) + len(names)
        log.warning(
            "echo log full (%d records): forgot the %d oldest (%d nodes, %d names); changes of "
            "those this session made may still come back to it",
            self.limit,
            len(nodes) + len(names),
            len(nodes),
            len(names),
        )

    def _expect(self, key: NameKey, kinds: frozenset[int], n: int) -> Expect:
        with self._lock:
            rec = self._get(self._names, key, _Name)
            self._by_name.setdefault(key[2], set()).add(key)
            item = Expect(kinds, n)
            rec.expect.append(item)
            return item

    def _unexpect(self, key: NameKey, item: Expect) -> None:
        # The mutation failed or changed nothing: it will not be reported, so nothing may be
        # swallowed for it.
        with self._lock:
            rec = self._names.get(key)
            if rec is None:
                return
            rec.expect = [e for e in rec.expect if e is not item]
            if not rec.expect:
                self._drop_name(key)

    def _done(self, item: Expect, node: Key | None = None) -> None:
        """The mutation returned; ``node``: the key of the node a creation made."""
        with self._lock:
            item.done = True
            if node is not None:
                item.node = node

    def _node_begin(self, key: Key, measure: Callable[[], Stamp | None]) -> None:
        """A call of the session is about to change the node; ``measure`` stats it, under the
        lock, so that no other call of the session ends between that stat and the comparison
        (one that did would make its own new state look like someone else's)."""
        with self._lock:
            before = measure()
            rec = self._get(self._nodes, key, _Node)
            if (
                not rec.pending
                and before is not None
                and rec.last is not None
                and before != rec.last
                and before != rec.seen
            ):
                rec.foreign = True
            rec.pending += 1

    def _node_end(
        self, key: Key, measure: Callable[[], Stamp | None], counted: bool = True
    ) -> None:
        """A call of the session changed the node; ``measure`` stats it.  The stat is taken under
        the lock: two calls ending together then record their stamps in the order they were
        taken, so the last one recorded is the node's latest (taken outside, a call that stat'ed
        before another's write could record its older stamp last, and the node's real state
        would look like someone else's change)."""
        with self._lock:
            if not self._watching:
                return
            stamp = measure()
            rec = self._get(self._nodes, key, _Node)
            if counted and rec.pending:
                rec.pending -= 1
            if stamp is not None:
                rec.last = stamp

    # --- matching: the watcher asks once per change and session -------------------------------
    def _lookup_names(self, pkey: Key | None, name: bytes) -> list[NameKey]:
        if pkey is not None:
            key = (pkey[0], pkey[1], name)
            return [key] if key in self._names else []
        # The directory is gone by the time the change is looked at (the session removed or
        # moved it right after): its name alone has to do.
        return list(self._by_name.get(name, ()))

    def is_echo(self, probe: Probe) -> bool:
        with self._lock:
            if probe.kind in (CREATED, DELETED, MOVED):
                hit = False
                for pkey, name in probe.entries:  # a move uses up both of its names
                    for key in self._lookup_names(pkey, name):
                        if self._use(key, probe.kind, probe):
                            hit = True
                            break
                if not hit and probe.kind == CREATED and probe.node is not None:
                    self._news_at(probe)
                return hit
            if probe.node is None:  # gone already: a change of the name still expected decides
                return any(self._lookup_names(pkey, name) for pkey, name in probe.entries)
            node_key, stamp = probe.node
            rec = self._nodes.get(node_key)
            if rec is None:
                return False
            if rec.foreign:
                rec.foreign = False
            elif rec.pending or self._left_here(rec, node_key, stamp, probe):
                return True
            rec.seen = stamp
            return False

    def _left_here(self, rec: _Node, key: Key, stamp: Stamp, probe: Probe) -> bool:
        """Whether the node is in the state the session's last call left it in.  A stamp taken
        before that call ended is taken again: under the lock no call of the session can end
        between that stat and the answer."""
        if rec.last is None:
            return False
        if stamp == rec.last:
            return True
        now = probe.again() if probe.again is not None else None
        if now is None and probe.again is not None:
            # Gone from the path since the first stat (the session's rename or unlink that
            # followed the change): as for a change found gone, the name still expected decides.
            return any(self._lookup_names(pkey, name) for pkey, name in probe.entries)
        return now is not None and now[0] == key and now[1] == rec.last

    def _news_at(self, probe: Probe) -> None:
        """A creation that is not the session's, its node still there: an expectation of the
        name whose mutation is done and whose change has not come by now is older than that
        node, and never will come (it was made where the watcher did not look yet).  Kept, it
        would swallow the host's removal of the node."""
        for pkey, name in probe.entries:
            if pkey is None:  # by name alone: too wide to forget anything by
                continue
            key = (pkey[0], pkey[1], name)
            rec = self._names.get(key)
            if rec is None:
                continue
            rec.expect = [e for e in rec.expect if not e.done]
            if not rec.expect:
                self._drop_name(key)

    def _made_here(self, item: Expect, probe: Probe) -> bool:
        """Whether the node a CREATED finds under the name (None: nothing any more, which
        cannot be told apart) is the one ``item``'s creation made and nobody else touched since:
        an inode number is soon reused, its stamp is not."""
        node = probe.node
        if node is None or item.node is None:
            return True
        key, stamp = node
        if item.node != key:
            return False
        rec = self._nodes.get(key)
        return rec is None or rec.pending > 0 or self._left_here(rec, key, stamp, probe)

    def _use(self, key: NameKey, kind: int, probe: Probe) -> bool:
        """Use up one expectation of ``kind`` (the oldest): the next change of this name is
        news.  A creation is this session's only if the node under the name is the one it
        made."""
        rec = self._names[key]
        for item in rec.expect:
            if kind in item.kinds and (kind != CREATED or self._made_here(item, probe)):
                item.count -= 1
                if item.count <= 0:
                    rec.expect.remove(item)
                    if not rec.expect:
                        self._drop_name(key)
                return True
        return False
