"""The largest size the host is known to have given each file, so that a replayed host change can
tell a host truncate from the host merely lagging behind this client's own writes.

A file on the host grows only by writes and shrinks only by a truncate (a file replaced under its
name is another node).  So if the host now has a file shorter than a size it was seen with since
this client last set the size itself, someone truncated it on the host: that is a real change,
replayed as a truncate.  Shorter than what the VM's kernel has but not shorter than anything the
host was seen with is the VM's own writes not on the host yet (in flight, or dirty pages of the
writeback cache): the kernel's size must then stay.

Sizes are seen in the replies to lookups, getattrs, listings and writes (a write answered at
``offset + n`` means the host had at least that much), whether the reply came from the server or
from a cache of its replies.  A local truncate sets the size; a reply fetched across it may be
older and is not taken (``token``).

``SizeWatch`` is the layer that sees them, just below the replay gate (a replay's own requests
answered from its plan are not the host's).  Lock: ``HostSizes._lock`` is a leaf.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable, Iterator

from bridgefs.client.layer import Layer
from bridgefs.fuse.filesystem import (
    Attr,
    AttrReply,
    Context,
    DirEntry,
    Entry,
    FileSystem,
    Opened,
    SetAttr,
)

MAX_FILES = 1 << 17  # past it everything is forgotten: a truncate then goes unnoticed once


class HostSizes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._max: dict[int, int] = {}
        self._sets = 0

    def token(self) -> int:
        """Read before asking the server; hand it to ``seen`` with the size in the reply."""
        return self._sets

    def seen(self, ino: int, size: int, token: int | None = None) -> None:
        with self._lock:
            if token is not None and token != self._sets:
                return  # a size was set meanwhile: this reply may be from before it
            if size > self._max.get(ino, -1):
                if len(self._max) >= MAX_FILES:
                    self._max.clear()
                self._max[ino] = size

    def set(self, ino: int, size: int) -> None:
        """The file's size is ``size`` now, on the host too (a truncate, local or replayed)."""
        with self._lock:
            self._sets += 1
            self._max[ino] = size

    def largest(self, ino: int) -> int:
        """The largest size seen; read it before asking the host for its size: a host shorter
        than this then truncated the file.  (Read after, it may count a write of this client
        that landed after the host answered.)"""
        with self._lock:
            return self._max.get(ino, 0)

    def forget(self, ino: int) -> None:
        with self._lock:
            self._max.pop(ino, None)


class SizeWatch(Layer):
    def __init__(self, inner: FileSystem, sizes: HostSizes):
        super().__init__(inner)
        self.sizes = sizes

    def _seen(self, ino: int, attr: Attr | None, token: int) -> None:
        if ino and attr is not None and stat.S_ISREG(attr.mode):
            self.sizes.seen(ino, attr.size, token)

    def lookup(self, ctx: Context, parent: int, name: bytes) -> Entry:
        token = self.sizes.token()
        entry = self.inner.lookup(ctx, parent, name)
        self._seen(entry.ino, entry.attr, token)
        return entry

    def create(
        self, ctx: Context, parent: int, name: bytes, mode: int, umask: int, flags: int
    ) -> tuple[Entry, Opened]:
        token = self.sizes.token()
        entry, opened = self.inner.create(ctx, parent, name, mode, umask, flags)
        self._seen(entry.ino, entry.attr, token)
        return entry, opened

    def getattr(self, ctx: Context, ino: int, fh: int | None) -> AttrReply:
        token = self.sizes.token()
        reply = self.inner.getattr(ctx, ino, fh)
        self._seen(ino, reply.attr, token)
        return reply

    def setattr(self, ctx: Context, ino: int, changes: SetAttr, fh: int | None) -> AttrReply:
        token = self.sizes.token()
        reply = self.inner.setattr(ctx, ino, changes, fh)
        if changes.size is not None:
            self.sizes.set(ino, reply.attr.size)
        else:
            self._seen(ino, reply.attr, token)
        return reply

    def open(self, ctx: Context, ino: int, flags: int) -> Opened:
        opened = self.inner.open(ctx, ino, flags)
        if flags & os.O_TRUNC:
            self.sizes.set(ino, 0)  # the kernel's size is 0 too once this is answered
        return opened

    def write(self, ctx: Context, ino: int, fh: int, offset: int, data: bytes, flags: int) -> int:
        token = self.sizes.token()
        written = self.inner.write(ctx, ino, fh, offset, data, flags)
        if written:
            self.sizes.seen(ino, offset + written, token)
        return written

    def forget(self, ino: int, nlookup: int) -> None:
        self.sizes.forget(ino)
        self.inner.forget(ino, nlookup)

    def readdir(
        self, ctx: Context, ino: int, fh: int, offset: int, plus: bool
    ) -> Iterable[DirEntry]:
        return self._listed(self.sizes.token(), self.inner.readdir(ctx, ino, fh, offset, plus))

    def _listed(self, token: int, records: Iterable[DirEntry]) -> Iterator[DirEntry]:
        for record in records:
            entry = record.entry
            if entry is not None:
                self._seen(entry.ino, entry.attr, token)
            yield record
