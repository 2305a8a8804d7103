"""Reading a directory's small files along with the first one a program reads, and putting them
into the kernel's page cache before they are asked for (see contents.py for why and how they are
kept).  Used by the caching layer while caches are long; every content is served or pushed only
while the client's attributes of the file are those it was read with.
"""

from __future__ import annotations

from collections.abc import Callable

from bridgefs.client.attrs import AttrCache
from bridgefs.client.contents import (
    BATCH_BYTES,
    SMALL_FILE,
    FilesAhead,
    Pusher,
    is_small_file,
    same_version,
)
from bridgefs.client.invalidate import KernelNotifier
from bridgefs.client.names import NameTable
from bridgefs.fuse import notify
from bridgefs.fuse.filesystem import Attr, DirEntry, FsError

# (inodes, largest file, most bytes in all) -> (ino, attributes, data) or None, per inode.
ReadFiles = Callable[[list[int], int, int], "list[tuple[int, Attr, bytes] | None]"]


class ReadAhead:
    def __init__(
        self, read_files: ReadFiles, names: NameTable, attrs: AttrCache, notifier: KernelNotifier
    ):
        self._read_files = read_files
        self._names = names
        self._attrs = attrs
        self._notifier = notifier
        self.files = FilesAhead()
        self._pusher: Pusher | None = None

    def start(self) -> None:
        if self._pusher is None:
            self._pusher = Pusher(self._push_pages)

    def close(self) -> None:
        if self._pusher is not None:
            self._pusher.close()

    # --- what directories hold ------------------------------------------------------------------
    def listing(self, dir_ino: int, restart: bool) -> dict[int, Attr]:
        return self.files.listing(dir_ino, restart)

    def listed_ahead(self, dir_ino: int, entries: list[DirEntry]) -> None:
        small_files = self.files.listing(dir_ino, restart=True)
        for d in entries:
            entry = d.entry
            if entry is not None and entry.attr is not None and is_small_file(entry.attr):
                small_files[entry.ino] = entry.attr

    # --- reads ----------------------------------------------------------------------------------
    def read(self, ino: int, attr: Attr | None, offset: int, size: int) -> bytes | None:
        """Bytes of ``ino`` without a READ round trip of its own, or None."""
        data = self.files.serve(ino, attr, offset, size)
        if data is None and offset == 0 and is_small_file(attr):
            data = self._read_along(ino, size)
        self.files.paged(ino)
        return data

    def _read_along(self, ino: int, size: int) -> bytes | None:
        """Read ``ino`` together with the small files of its directory the kernel has not
        read yet; None when there is nothing to read along (then a plain read follows)."""
        where = self._names.names_of(ino)
        picks = self.files.plan(ino, where[0][0] if where else None)
        if not picks:
            return None
        try:
            contents = self._read_files(picks, SMALL_FILE, BATCH_BYTES)
        except FsError:
            return None
        wanted, pushes = None, []
        for content in contents:
            if content is None:
                continue
            other, attr, data = content
            if other == ino:
                wanted = data[:size]
            elif data:
                self.files.put(other, attr, data)
                pushes.append((other, attr, data))
        if pushes and self._pusher is not None:
            self._pusher.submit(pushes)
        return wanted

    def _push_pages(self, ino: int, attr: Attr, data: bytes) -> None:
        # Under the notification lock: an event's invalidation of this file either dropped the
        # attributes before this check (nothing is pushed) or is sent after the push (and drops
        # the pushed pages).
        with self._notifier.lock:
            if not same_version(self._attrs.get(ino), attr):
                return
            if not self._notifier.send_locked(notify.store(ino, 0, data)):
                return  # not attached, or the kernel no longer has the node
        self.files.stored(ino)

    def forget(self, ino: int) -> None:
        self.files.forget(ino)

    def clear(self) -> None:
        self.files.clear()
