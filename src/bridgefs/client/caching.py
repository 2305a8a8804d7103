"""The caching layer: answers from what the client already knows, while the change stream
says it can be trusted (``policy.mode.trust_pages``: long caches), and forgets exactly what an
operation changes.

What it keeps, each in its own part: attributes and capability absences (attrs.py), the names
of directories this client made (own_dirs.py), listings fetched ahead (the remote's listings),
small files read ahead (read_ahead.py), and free space (10 s).  It wraps any FileSystem; it
takes the facts the remote's replies carry that the interface cannot (facts.py), and it is the
part the invalidator drops nodes from (invalidate.py).

``CHANGES`` says which arguments of an operation are nodes it changes: their remembered
attributes (and, for xattr changes, capability absences) are dropped before the operation goes
on, and the attributes again once it is done (what a getattr fetched meanwhile is older).
Operations listed there have no method of their own here.
"""

from __future__ import annotations

import errno
import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bridgefs.client.attrs import AttrCache
from bridgefs.client.cache_policy import CachePolicy
from bridgefs.client.contents import is_small_file
from bridgefs.client.layer import Layer
from bridgefs.client.listings import Listings
from bridgefs.client.names import NameTable
from bridgefs.client.own_dirs import OwnDirs
from bridgefs.client.read_ahead import ReadAhead
from bridgefs.client.replay import is_fake
from bridgefs.fuse.filesystem import (
    Attr,
    AttrReply,
    Context,
    DirEntry,
    Entry,
    FileSystem,
    FsError,
    Opened,
    SetAttr,
    StatFs,
)

ATTRS = 1  # the node's attributes
XATTRS = 2  # what is known of its extended attributes (security.capability)

CHANGES: dict[str, tuple[tuple[str, int], ...]] = {
    "write": (("ino", ATTRS),),
    "fallocate": (("ino", ATTRS),),
    "copy_file_range": (("ino_out", ATTRS),),
    "setxattr": (("ino", ATTRS | XATTRS),),
    "removexattr": (("ino", ATTRS),),
}

STATFS_TTL = 10.0


class CachingLayer(Layer):
    def __init__(
        self,
        inner: FileSystem,
        policy: CachePolicy,
        names: NameTable,
        listings: Listings,
        read_ahead: ReadAhead,
        attrs: AttrCache,
    ):
        super().__init__(inner)
        self.policy = policy
        self.names = names  # read only: which node a name stands for
        self.listings = listings
        self.read_ahead = read_ahead
        self.attrs = attrs
        self.own_dirs = OwnDirs()
        self._statfs: tuple[float, StatFs] | None = None

    # --- what the invalidator drops ---------------------------------------------------------------
    def drop_node(self, ino: int) -> None:
        self.attrs.invalidate(ino)
        self.read_ahead.forget(ino)
        self.own_dirs.drop(ino)

    def drop_dir_names(self, ino: int) -> None:
        self.own_dirs.drop(ino)

    def drop_everything(self) -> None:
        self.attrs.clear()
        self.read_ahead.clear()
        self.own_dirs.clear()

    # --- facts from the remote's replies ----------------------------------------------------------
    def dir_changing(self, parent: int) -> Any:
        return self.attrs.dir_changing(parent)

    def dir_changed(self, parent: int, token: Any, attr: Attr | None) -> None:
        self.attrs.dir_changed(parent, token, attr if self._trusted(parent) else None)

    def names_refused(self, parent: int) -> None:
        self.own_dirs.drop(parent)  # whatever it knew of them, the server knows otherwise

    def file_made(self, ino: int) -> None:
        # A new file has no security.capability (the kernel asks before every write) until
        # this client sets one or an event says the host did.
        if self.policy.mode.trust_pages:
            self.attrs.set_no_caps(ino, True)

    def listed_ahead(self, ino: int, entries: list[DirEntry]) -> None:
        self.read_ahead.listed_ahead(ino, entries)

    # --- remembering ------------------------------------------------------------------------------
    def _trusted(self, ino: int) -> bool:
        return self.policy.mode.trust_pages and not is_fake(ino)

    def _keep(self, ino: int, attr: Attr | None, since: int | None = None) -> None:
        if self._trusted(ino):
            self.attrs.keep(ino, attr, since)

    def _keep_entry(self, entry: Entry, since: int | None = None) -> Entry:
        if entry.ino and entry.attr_timeout > 0:
            self._keep(entry.ino, entry.attr, since)
        return entry

    def _created(self, parent: int, name: bytes, entry: Entry) -> Entry:
        self.own_dirs.added(parent, name)
        return self._keep_entry(entry)  # (the parent's attributes: dir_changed)

    # --- names ------------------------------------------------------------------------------------
    def lookup(self, ctx: Context, parent: int, name: bytes) -> Entry:
        if self.policy.mode.cache_listings:
            if self.own_dirs.absent(parent, name):
                return Entry(ino=0, attr=None, entry_timeout=self.policy.mode.negative_timeout)
            entry = self.listings.lookup(parent, name)  # no round trip: a listing has the answer
            if entry is not None:
                return self._keep_entry(entry)
        since = self.attrs.generation
        return self._keep_entry(self.inner.lookup(ctx, parent, name), since)

    def mknod(
        self, ctx: Context, parent: int, name: bytes, mode: int, rdev: int, umask: int
    ) -> Entry:
        return self._created(parent, name, self.inner.mknod(ctx, parent, name, mode, rdev, umask))

    def mkdir(self, ctx: Context, parent: int, name: bytes, mode: int, umask: int) -> Entry:
        entry = self._created(parent, name, self.inner.mkdir(ctx, parent, name, mode, umask))
        if self.policy.mode.cache_listings:
            self.own_dirs.made(entry.ino)
        return entry

    def symlink(self, ctx: Context, parent: int, name: bytes, target: bytes) -> Entry:
        return self._created(parent, name, self.inner.symlink(ctx, parent, name, target))

    def link(self, ctx: Context, ino: int, new_parent: int, new_name: bytes) -> Entry:
        self.attrs.drop(ino)  # its link count
        return self._created(new_parent, new_name, self.inner.link(ctx, ino, new_parent, new_name))

    def create(
        self, ctx: Context, parent: int, name: bytes, mode: int, umask: int, flags: int
    ) -> tuple[Entry, Opened]:
        entry, opened = self.inner.create(ctx, parent, name, mode, umask, flags)
        return self._created(parent, name, entry), opened

    def unlink(self, ctx: Context, parent: int, name: bytes) -> None:
        self.inner.unlink(ctx, parent, name)  # (the parent's attributes: dir_changed)
        self.own_dirs.removed(parent, name)
        self.attrs.drop(self.names.lookup(parent, name) or 0)

    def rmdir(self, ctx: Context, parent: int, name: bytes) -> None:
        self.inner.rmdir(ctx, parent, name)
        self.own_dirs.removed(parent, name)
        gone = self.names.lookup(parent, name) or 0
        self.own_dirs.drop(gone)
        self.attrs.drop(gone)

    def rename(
        self, ctx: Context, parent: int, name: bytes, new_parent: int, new_name: bytes, flags: int
    ) -> None:
        moved = self.names.lookup(parent, name) or 0
        replaced = self.names.lookup(new_parent, new_name) or 0
        self.inner.rename(ctx, parent, name, new_parent, new_name, flags)
        if not flags & 2:  # (RENAME_EXCHANGE leaves both names in place)
            self.own_dirs.removed(parent, name)
        self.own_dirs.added(new_parent, new_name)
        for ino in (parent, new_parent, moved, replaced):
            self.attrs.drop(ino)

    def forget(self, ino: int, nlookup: int) -> None:
        self.attrs.drop(ino)
        self.attrs.set_no_caps(ino, False)
        self.read_ahead.forget(ino)
        self.own_dirs.drop(ino)
        self.inner.forget(ino, nlookup)

    # --- attributes -------------------------------------------------------------------------------
    def getattr(self, ctx: Context, ino: int, fh: int | None) -> AttrReply:
        if self.policy.mode.trust_pages:
            attr = self.attrs.get(ino)
            if attr is not None:
                return AttrReply(attr, self.policy.mode.attr_timeout)
        since = self.attrs.generation
        reply = self.inner.getattr(ctx, ino, fh)
        self._keep(ino, reply.attr, since)
        return reply

    def setattr(self, ctx: Context, ino: int, changes: SetAttr, fh: int | None) -> AttrReply:
        # Not kept: a getattr answered while it ran could come back after this reply and
        # leave older attributes (a size before a truncate) where it would be kept.
        self.attrs.drop(ino)
        try:
            return self.inner.setattr(ctx, ino, changes, fh)
        finally:
            self.attrs.drop(ino)

    def statfs(self, ctx: Context, ino: int) -> StatFs:
        # Free space changes all the time and raises no event; a figure up to 10 s old spares
        # a round trip per `df` and per directory walk (fts asks once per walk).
        now = time.monotonic()
        cached = self._statfs
        if self.policy.mode.trust_pages and cached is not None and now - cached[0] < STATFS_TTL:
            return cached[1]
        result = self.inner.statfs(ctx, ino)
        self._statfs = (now, result)
        return result

    def getxattr(self, ctx: Context, ino: int, name: bytes) -> bytes:
        # The kernel asks for security.capability before every write; a file that had none
        # while changes stream in has none until an event or this client says otherwise.
        caps = name == b"security.capability" and self.policy.mode.trust_pages
        if caps and self.attrs.has_no_caps(ino):
            raise FsError(errno.ENODATA)
        try:
            return self.inner.getxattr(ctx, ino, name)
        except FsError as exc:
            if caps and exc.errno == errno.ENODATA:
                self.attrs.set_no_caps(ino, True)
            raise

    # --- contents and listings --------------------------------------------------------------------
    def read(self, ctx: Context, ino: int, fh: int, offset: int, size: int) -> bytes:
        if not fh and self.policy.mode.trust_pages:
            data = self.read_ahead.read(ino, self.attrs.get(ino), offset, size)
            if data is not None:
                return data
        return self.inner.read(ctx, ino, fh, offset, size)

    def readdir(
        self, ctx: Context, ino: int, fh: int, offset: int, plus: bool
    ) -> Iterable[DirEntry]:
        return self._remembered(ino, offset, self.inner.readdir(ctx, ino, fh, offset, plus))

    def _remembered(self, ino: int, offset: int, records: Iterable[DirEntry]) -> Iterator[DirEntry]:
        small_files = self.read_ahead.listing(ino, restart=offset == 0)
        since = self.attrs.generation
        for record in records:
            entry = record.entry
            if entry is not None and entry.ino:
                self._keep(entry.ino, entry.attr, since)
                if is_small_file(entry.attr):
                    small_files[entry.ino] = entry.attr  # type: ignore[assignment]
            yield record


def _dropping(name: str, changes: tuple[tuple[str, int], ...]) -> Callable[..., Any]:
    params = list(inspect.signature(getattr(FileSystem, name)).parameters)[1:]  # (no self)
    spots = [(params.index(arg), what) for arg, what in changes]

    def operation(self: CachingLayer, *args: Any) -> Any:
        for index, what in spots:
            ino = args[index]
            if what & ATTRS:
                self.attrs.drop(ino)
            if what & XATTRS:
                self.attrs.set_no_caps(ino, False)
        try:
            return getattr(self.inner, name)(*args)
        finally:
            # Again once done: attributes a getattr fetched while it ran are from before it.
            for index, what in spots:
                if what & ATTRS:
                    self.attrs.drop(args[index])

    operation.__name__ = operation.__qualname__ = name
    operation.__doc__ = f"{name}, after dropping what it changes ({changes})."
    return operation


for _name, _changes in CHANGES.items():
    setattr(CachingLayer, _name, _dropping(_name, _changes))
