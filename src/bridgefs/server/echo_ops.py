"""The recording side of echo suppression (echo.py): the context each mutation of LocalFs runs
in, which tells the session's EchoLog what changes to expect from it and in which state it left
the nodes it touched.  Nothing here decides what is an echo."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Self

from bridgefs.change_kinds import ChangeKind
from bridgefs.server import at
from bridgefs.server.confine import Name, Refused, check_name

if TYPE_CHECKING:
    from bridgefs.server.echo import EchoLog

CREATED, DELETED, MOVED = ChangeKind.CREATED, ChangeKind.DELETED, ChangeKind.MOVED
ADD = frozenset((CREATED,))
REMOVE = frozenset((DELETED,))
# A rename is reported as MOVED, or as DELETED + CREATED when the observer could not pair it.
MOVE = frozenset((MOVED, DELETED, CREATED))

Key = tuple[int, int]  # (st_dev, st_ino) of a node
Stamp = tuple[int, int, int, int, int]  # what stamp_of gives
NameKey = tuple[int, int, bytes]  # (st_dev, st_ino) of a directory, and a name in it


def stamp_of(st: os.stat_result) -> Stamp:
    # ctime moves on every change of the inode; the rest tells two changes in one clock tick apart.
    return (st.st_ctime_ns, st.st_mtime_ns, st.st_size, st.st_nlink, st.st_mode)


def key_of(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino)


class Expect:
    """One mutation's change(s) not seen yet: ``count`` changes of one of ``kinds``; ``node``
    is the key of the node a creation made (None: any); ``done`` once the mutation returned."""

    __slots__ = ("kinds", "count", "node", "done")

    def __init__(self, kinds: frozenset[int], count: int):
        self.kinds, self.count = kinds, count
        self.node: Key | None = None
        self.done = False


class NoOp:
    """What recording returns while the session does not watch."""

    __slots__ = ()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def cancel(self) -> None:
        pass


NOOP = NoOp()


class EntryOp:
    __slots__ = ("log", "items", "keys", "dirs", "kept")

    def __init__(self, log: EchoLog, items: tuple[tuple[int, bytes, frozenset[int], int], ...]):
        self.log, self.items = log, items
        self.keys: list[tuple[NameKey, int, bytes, frozenset[int], Expect]] = []
        self.dirs: list[tuple[int, Key]] = []  # (dirfd, key) of each directory changed
        self.kept: list[tuple[int, Key]] = []  # (O_PATH fd, key) of nodes losing one name

    def __enter__(self) -> Self:
        # Expected before the syscall, as the watcher may see the change before it returns.
        # Bookkeeping never fails a mutation: a directory that cannot be stat'ed is not recorded.
        for dirfd, name, kinds, n in self.items:
            try:
                dst = os.fstat(dirfd)
            except OSError:
                continue
            dkey = key_of(dst)
            key = (dkey[0], dkey[1], name)
            self.keys.append((key, dirfd, name, kinds, self.log._expect(key, kinds, n)))
            # The directory's stamp changes too: pending until its new stamp is known.
            self.log._node_begin(dkey, _fd_stamp(dirfd))
            self.dirs.append((dirfd, dkey))
            if kinds is not ADD:
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
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            return
        key = key_of(st)
        self.log._node_begin(key, _fd_stamp(fd))
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
            else:
                self.log._done(item)
            # Whatever is under the name now is this session's doing.  Only a valid single
            # component is looked at: a client's name is never resolved as a path.
            checked = _component(name)
            if checked is None:
                continue
            try:
                st = at.stat(dirfd, checked)
            except (OSError, ValueError):
                continue
            if kinds is ADD and exc_type is None:
                self.log._done(item, key_of(st))
            self.log._node_end(key_of(st), _named_stamp(dirfd, checked), counted=False)
        for fd, node_key in self.kept:
            try:
                self.log._node_end(node_key, _fd_stamp(fd))
            finally:
                os.close(fd)
        for dirfd, dkey in self.dirs:
            self.log._node_end(dkey, _fd_stamp(dirfd))


def _fd_stamp(fd: int) -> Callable[[], Stamp | None]:
    def measure() -> Stamp | None:
        try:
            return stamp_of(os.fstat(fd))
        except OSError:
            return None

    return measure


def _named_stamp(dirfd: int, name: Name) -> Callable[[], Stamp | None]:
    def measure() -> Stamp | None:
        try:
            return stamp_of(at.stat(dirfd, name))
        except OSError:
            return None

    return measure


def _component(name: bytes) -> Name | None:
    try:
        return check_name(name)
    except Refused:
        return None


class NodeOp:
    __slots__ = ("log", "fd", "key")

    def __init__(self, log: EchoLog, fd: int):
        self.log, self.fd = log, fd
        self.key: Key | None = None

    def __enter__(self) -> Self:
        try:
            st = os.fstat(self.fd)
        except OSError:
            self.key = None
            return self
        self.key = key_of(st)
        self.log._node_begin(self.key, _fd_stamp(self.fd))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.key is None:
            return
        self.log._node_end(self.key, _fd_stamp(self.fd))
