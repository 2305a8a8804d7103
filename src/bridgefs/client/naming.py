"""The layer that records every name the kernel is handed (names.py), replays' answers
included, so that a host-side change found by path turns into exactly the invalidations it
needs, and a node can be named again after a server restart."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from bridgefs.client.layer import Layer
from bridgefs.client.names import NameTable
from bridgefs.fuse.filesystem import Context, DirEntry, Entry, FileSystem, Opened

RENAME_EXCHANGE = 2


class NamingLayer(Layer):
    def __init__(self, inner: FileSystem, names: NameTable):
        super().__init__(inner)
        self.names = names

    def _named(self, parent: int, name: bytes, entry: Entry) -> Entry:
        if entry.ino:
            self.names.add(parent, name, entry.ino)
        elif entry.entry_timeout > 0 and not self.names.add_negative(parent, name):
            entry.entry_timeout = 0  # could not be found again to invalidate: do not cache it
        return entry

    def lookup(self, ctx: Context, parent: int, name: bytes) -> Entry:
        return self._named(parent, name, self.inner.lookup(ctx, parent, name))

    def mknod(
        self, ctx: Context, parent: int, name: bytes, mode: int, rdev: int, umask: int
    ) -> Entry:
        return self._named(parent, name, self.inner.mknod(ctx, parent, name, mode, rdev, umask))

    def mkdir(self, ctx: Context, parent: int, name: bytes, mode: int, umask: int) -> Entry:
        return self._named(parent, name, self.inner.mkdir(ctx, parent, name, mode, umask))

    def symlink(self, ctx: Context, parent: int, name: bytes, target: bytes) -> Entry:
        return self._named(parent, name, self.inner.symlink(ctx, parent, name, target))

    def link(self, ctx: Context, ino: int, new_parent: int, new_name: bytes) -> Entry:
        return self._named(new_parent, new_name, self.inner.link(ctx, ino, new_parent, new_name))

    def create(
        self, ctx: Context, parent: int, name: bytes, mode: int, umask: int, flags: int
    ) -> tuple[Entry, Opened]:
        entry, opened = self.inner.create(ctx, parent, name, mode, umask, flags)
        return self._named(parent, name, entry), opened

    def unlink(self, ctx: Context, parent: int, name: bytes) -> None:
        self.inner.unlink(ctx, parent, name)
        self.names.remove(parent, name)

    def rmdir(self, ctx: Context, parent: int, name: bytes) -> None:
        self.inner.rmdir(ctx, parent, name)
        self.names.remove(parent, name)

    def rename(
        self, ctx: Context, parent: int, name: bytes, new_parent: int, new_name: bytes, flags: int
    ) -> None:
        self.inner.rename(ctx, parent, name, new_parent, new_name, flags)
        self.names.move(parent, name, new_parent, new_name, exchange=bool(flags & RENAME_EXCHANGE))

    def forget(self, ino: int, nlookup: int) -> None:
        self.names.forget(ino)
        self.inner.forget(ino, nlookup)

    def readdir(
        self, ctx: Context, ino: int, fh: int, offset: int, plus: bool
    ) -> Iterable[DirEntry]:
        return self._recorded(ino, self.inner.readdir(ctx, ino, fh, offset, plus))

    def _recorded(self, ino: int, records: Iterable[DirEntry]) -> Iterator[DirEntry]:
        for record in records:
            entry = record.entry
            if entry is not None and entry.ino:
                self.names.add(ino, record.name, entry.ino)
            yield record

    def locate(self, ino: int) -> tuple[int, bytes] | None:
        """(parent, name) the kernel last had ``ino`` under, or None."""
        names = self.names.names_of(ino)
        return names[0] if names else None
