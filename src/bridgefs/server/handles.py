"""Per-session tables of node handles and open-file handles, with bounds.

Node handles are what the client uses as FUSE node ids: the share root is 1, the rest come from a
counter that never goes back within a session, so a forgotten handle never names another file.
Both tables start their counters at a random number (``first_number``): a client whose server
restarted may still send a number of the lost session with the new session's token (a request
built as it resumed), and from a counter starting at the same place as before that number
would name a file of the new session; from a random start it is one never issued.
Each node holds an O_PATH fd and the number of times the server handed the handle out; Forget
subtracts what the client received and the node is dropped at zero.  One host inode has one handle
at a time (keyed by st_dev, st_ino), so a Lookup that races with a Forget either bumps the count
before the Forget lands (the node survives) or finds the node gone and allocates a new handle.

Every use of an fd pins its node or open file: a concurrent Forget or Release only marks it dead,
and the fd is closed when the last user unpins.  Without that, a racing close would let the fd
number be reused for another file (possibly in another share) while a request still uses it.
"""

from __future__ import annotations

import errno
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridgefs.server.confine import Refused
from bridgefs.server.dirs import DirListing, ListingBudget

if TYPE_CHECKING:
    from bridgefs.server.bounds import Account

FDS_PER_OPEN = 2  # an open directory also holds its scan's dup

ROOT_HANDLE = 1
# Below the client's epoch bits (client/session.py EPOCH_SHIFT, 40), with room to count on.
NUMBER_SPAN = 1 << 38


def first_number() -> int:
    """Where a session's counter of handles or open files starts."""
    return ROOT_HANDLE + 1 + secrets.randbelow(NUMBER_SPAN)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client session may hold; past a bound the request fails with the errno named."""

    max_nodes: int = 65536  # ENFILE
    max_open: int = 4096  # open files + open directories: EMFILE
    max_inflight: int = 64  # concurrent calls: EAGAIN
    max_sessions: int = 64  # sessions per server: EUSERS
    idle_timeout: float = 600.0  # seconds without a call before a session is reaped
    max_client_sessions: int = 16  # sessions of one client (TLS subject or peer host): EUSERS
    max_client_inflight: int = 32  # concurrent calls of all one client's sessions: EAGAIN
    max_listed: int = 32768  # directory records one session keeps for its open listings
    # Seconds a session outlives its client's hold stream: a client whose connection broke
    # and came back opens it again and keeps its session; a vanished one loses it then.
    hold_grace: float = 5.0


class _Ref:
    __slots__ = ("fd", "pins", "dead")

    def __init__(self, fd: int):
        self.fd = fd
        self.pins = 0
        self.dead = False


class Node(_Ref):
    __slots__ = ("handle", "key", "count")

    def __init__(self, handle: int, fd: int, key: tuple[int, int], count: int):
        super().__init__(fd)
        self.handle = handle
        self.key = key
        self.count = count


class OpenFile(_Ref):
    __slots__ = ("fh", "kind", "handle", "listing")

    def __init__(self, fh: int, fd: int, kind: str, handle: int, listing: DirListing | None = None):
        super().__init__(fd)
        self.fh = fh
        self.kind = kind  # "file" | "dir"
        self.handle = handle
        self.listing = listing


def _close(ref: _Ref) -> None:
    listing = getattr(ref, "listing", None)
    if listing is not None:
        listing.close()  # its scandir holds a dup of the directory fd
    os.close(ref.fd)


class _Table:
    """The pin/unpin/kill protocol shared by both tables."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _unpin(self, ref: _Ref) -> None:
        with self._lock:
            ref.pins -= 1
            close = ref.dead and ref.pins == 0
        if close:
            _close(ref)

    def _kill_locked(self, ref: _Ref) -> bool:
        """Mark dead; True when the caller must close the fd (no one holds it)."""
        ref.dead = True
        return ref.pins == 0


class NodeTable(_Table):
    def __init__(
        self, root_fd: int, root_key: tuple[int, int], limit: int, account: Account | None = None
    ):
        super().__init__()
        self._limit = limit
        self._account = account
        self._first = self._next = first_number()
        root = Node(ROOT_HANDLE, root_fd, root_key, 1)
        self._nodes: dict[int, Node] = {ROOT_HANDLE: root}
        self._by_key: dict[tuple[int, int], Node] = {root_key: root}

    def __len__(self) -> int:
        return len(self._nodes)

    def issue(self, fd: int, st: os.stat_result) -> int:
        """Hand out a handle for the inode behind ``fd`` (an O_PATH fd this table now owns)."""
        key = (st.st_dev, st.st_ino)
        shared = False
        with self._lock:
            node = self._by_key.get(key)
            if node is not None:
                if node.handle != ROOT_HANDLE:
                    node.count += 1
                handle, close_fd = node.handle, True
            elif len(self._nodes) >= self._limit:
                handle, close_fd = 0, True
            elif self._account is not None and not self._account.take(1):
                handle, close_fd, shared = 0, True, True
            else:
                handle, close_fd = self._next, False
                self._next += 1
                node = Node(handle, fd, key, 1)
                self._nodes[handle] = node
                self._by_key[key] = node
        if close_fd:
            os.close(fd)
        if not handle and shared:
            raise OSError(errno.ENFILE, "the descriptors sessions may borrow are all in use")
        if not handle:
            raise OSError(errno.ENFILE, f"session holds {self._limit} nodes")
        return handle

    def ref(self, handle: int) -> None:
        """Count one more hand-out of an existing handle (Link returns the linked node)."""
        with self._lock:
            node = self._nodes.get(handle)
            if node is None:
                raise self._missing(handle)
            if handle != ROOT_HANDLE:
                node.count += 1

    def _missing(self, handle: int) -> OSError:
        # A forgotten handle is an ordinary race; one never issued is a forgery worth a log line.
        if not self._first <= handle < self._next:
            return Refused(errno.ESTALE, f"node handle {handle} was never issued")
        return OSError(errno.ESTALE, f"node handle {handle} was forgotten")

    @contextmanager
    def use(self, handle: int) -> Iterator[int]:
        """The node's O_PATH fd, kept open until the block ends."""
        with self._lock:
            node = self._nodes.get(handle)
            if node is None:
                raise self._missing(handle)
            node.pins += 1
        try:
            yield node.fd
        finally:
            self._unpin(node)

    def forget(self, handle: int, count: int) -> bool:
        """Return ``count`` references; True if the node was dropped.  The root is never dropped,
        and an unknown handle is ignored (its Forget may have raced with another)."""
        with self._lock:
            node = self._nodes.get(handle)
            if node is None or handle == ROOT_HANDLE:
                return False
            node.count -= count
            if node.count > 0:
                return False
            del self._nodes[handle]
            del self._by_key[node.key]
            close = self._kill_locked(node)
        if self._account is not None:
            self._account.give(1)
        if close:
            _close(node)
        return True

    def close_all(self) -> None:
        with self._lock:
            nodes = list(self._nodes.values())
            self._nodes.clear()
            self._by_key.clear()
            to_close = [n for n in nodes if self._kill_locked(n)]
        for node in to_close:
            _close(node)


class OpenTable(_Table):
    def __init__(self, limit: int, max_listed: int = 32768, account: Account | None = None):
        super().__init__()
        self._limit = limit
        self._account = account
        self._first = self._next = first_number()
        self._files: dict[int, OpenFile] = {}
        self.listed = ListingBudget(max_listed)  # what the session's directory handles keep

    def __len__(self) -> int:
        return len(self._files)

    def _missing(self, fh: int, kind: str) -> OSError:
        if not self._first <= fh < self._next:
            return Refused(errno.EBADF, f"{kind} handle {fh} was never issued")
        return OSError(errno.EBADF, f"{kind} handle {fh} is not open (or not a {kind})")

    def check_room(self) -> None:
        if len(self._files) >= self._limit:
            raise OSError(errno.EMFILE, f"session holds {self._limit} open files")

    def add(self, fd: int, kind: str, handle: int, listing: DirListing | None = None) -> int:
        """Register an fd this table now owns; closes it and raises EMFILE past the bound."""
        with self._lock:
            full = len(self._files) >= self._limit
            # Past the session's own bound, or the pool cannot lend it the descriptors.
            shared = not full and self._account is not None and not self._account.take(FDS_PER_OPEN)
            full = full or shared
            if not full:
                fh = self._next
                self._next += 1
                self._files[fh] = OpenFile(fh, fd, kind, handle, listing)
                if listing is not None:
                    listing.budget = self.listed
        if full:
            os.close(fd)
            if shared:
                raise OSError(errno.EMFILE, "the descriptors sessions may borrow are all in use")
            raise OSError(errno.EMFILE, f"session holds {self._limit} open files")
        return fh

    @contextmanager
    def use(self, fh: int, kind: str = "file") -> Iterator[OpenFile]:
        with self._lock:
            of = self._files.get(fh)
            if of is None or of.kind != kind:
                raise self._missing(fh, kind)
            of.pins += 1
        try:
            yield of
        finally:
            self._unpin(of)

    def release(self, fh: int, kind: str = "file") -> None:
        with self._lock:
            of = self._files.get(fh)
            if of is None or of.kind != kind:
                raise self._missing(fh, kind)
            del self._files[fh]
            close = self._kill_locked(of)
        if self._account is not None:
            self._account.give(FDS_PER_OPEN)
        if close:
            _close(of)

    def close_all(self) -> None:
        with self._lock:
            files = list(self._files.values())
            self._files.clear()
            to_close = [f for f in files if self._kill_locked(f)]
        for of in to_close:
            _close(of)
