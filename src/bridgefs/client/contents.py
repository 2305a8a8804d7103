"""Contents of small files fetched ahead, for the reads a program is about to make.

A build, a test runner or an import reads the files of a directory one after another, and each
read of a file the kernel does not cache is a round trip.  When one such read comes, the client
fetches the directory's other small files in the same call (ReadFiles) and keeps them here until
the kernel asks.  A content is kept with the attributes it was read with, and served only while
the client's attributes of the file are still those: an event or a change through this client
drops those attributes, and with them the content's use.
"""

from __future__ import annotations

import logging
import queue
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable

from bridgefs.fuse.filesystem import Attr

SMALL_FILE = 256 << 10  # files up to this size are fetched ahead
BATCH_BYTES = 1 << 20  # contents one ReadFiles brings at most
BATCH_FILES = 256
KEEP_BYTES = 32 << 20  # contents kept at most; the oldest go first
KEEP_DIRS = 8192  # directories whose small files are remembered


log = logging.getLogger("bridgefs.client")


def _stamp(attr: Attr) -> tuple[int, int, int]:
    return (attr.size, attr.mtime_ns, attr.ctime_ns)


def same_version(a: Attr | None, b: Attr | None) -> bool:
    return a is not None and b is not None and _stamp(a) == _stamp(b)


def is_small_file(attr: Attr | None) -> bool:
    return attr is not None and stat.S_ISREG(attr.mode) and attr.size <= SMALL_FILE


class FilesAhead:
    def __init__(self, keep_bytes: int = KEEP_BYTES):
        self._lock = threading.Lock()
        self._kept: OrderedDict[int, tuple[tuple[int, int, int], bytes]] = OrderedDict()
        self._bytes = 0
        self._keep_bytes = keep_bytes
        self._dirs: OrderedDict[int, dict[int, Attr]] = OrderedDict()  # dir -> small files
        self._paged: set[int] = set()  # read by the kernel since it last dropped its pages

    # --- what the directories hold (from listings handed to the kernel) ------------------------
    def listing(self, dir_ino: int, restart: bool) -> dict[int, Attr]:
        """The small files recorded for ``dir_ino`` (node -> attributes as listed), started
        afresh for a listing from cookie 0."""
        with self._lock:
            files = None if restart else self._dirs.get(dir_ino)
            if files is None:
                files = self._dirs[dir_ino] = {}
                while len(self._dirs) > KEEP_DIRS:
                    self._dirs.popitem(last=False)
            return files

    def plan(self, ino: int, parent: int | None) -> list[int]:
        """The files to read along with ``ino``: the small ones listed after it in its directory,
        then those before it, that the kernel has not read yet; [] when there are none."""
        with self._lock:
            listed = dict(self._dirs.get(parent, ())) if parent is not None else {}
            paged, kept = set(self._paged), set(self._kept)
        siblings = list(listed)
        if ino not in listed:
            return []
        at = siblings.index(ino)
        picks, total = [ino], listed[ino].size
        for other in siblings[at + 1 :] + siblings[:at]:
            if other in paged or other in kept:
                continue
            attr = listed[other]
            if total + attr.size > BATCH_BYTES or len(picks) >= BATCH_FILES:
                break
            picks.append(other)
            total += attr.size
        return picks if len(picks) > 1 else []

    # --- contents ------------------------------------------------------------------------------
    def put(self, ino: int, attr: Attr, data: bytes) -> None:
        with self._lock:
            old = self._kept.pop(ino, None)
            if old is not None:
                self._bytes -= len(old[1])
            self._kept[ino] = (_stamp(attr), data)
            self._bytes += len(data)
            while self._bytes > self._keep_bytes and self._kept:
                _, (_, dropped) = self._kept.popitem(last=False)
                self._bytes -= len(dropped)

    def serve(self, ino: int, attr: Attr | None, offset: int, size: int) -> bytes | None:
        """Bytes [offset, offset + size) of ``ino`` if its content was read with attributes
        ``attr``; the content is let go once read to its end (the kernel keeps the pages)."""
        with self._lock:
            kept = self._kept.get(ino)
            if kept is None:
                return None
            stale = attr is None or kept[0] != _stamp(attr)
            if stale or offset + size >= len(kept[1]):
                del self._kept[ino]
                self._bytes -= len(kept[1])
        return None if stale else kept[1][offset : offset + size]

    def stored(self, ino: int) -> None:
        """The content went into the kernel's page cache: nothing to keep for a READ."""
        with self._lock:
            self._paged.add(ino)
            kept = self._kept.pop(ino, None)
            if kept is not None:
                self._bytes -= len(kept[1])

    def paged(self, ino: int) -> None:
        with self._lock:
            self._paged.add(ino)

    def forget(self, ino: int) -> None:
        """The kernel dropped ``ino``'s pages (or the node): read it again when asked."""
        with self._lock:
            self._paged.discard(ino)
            kept = self._kept.pop(ino, None)
            if kept is not None:
                self._bytes -= len(kept[1])

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._bytes = 0
            self._paged.clear()


class Pusher:
    """Puts contents read ahead into the kernel's page cache (FUSE_NOTIFY_STORE) before a
    program asks, so that reading them costs not even a READ request.  From a thread of its own:
    a notification must never be written while answering a request the kernel may be waiting
    on.  Contents it cannot push in time stay with FilesAhead for the READs."""

    def __init__(self, push: Callable[[int, Attr, bytes], None], backlog: int = 64):
        self._push = push
        self._queue: queue.Queue[list[tuple[int, Attr, bytes]] | None] = queue.Queue(
            maxsize=backlog
        )
        self._thread = threading.Thread(target=self._run, name="bridgefs-pages", daemon=True)
        self._thread.start()

    def submit(self, items: list[tuple[int, Attr, bytes]]) -> None:
        try:
            self._queue.put_nowait(items)
        except queue.Full:
            pass

    def close(self) -> None:
        try:
            self._queue.put(None, timeout=1.0)
        except queue.Full:
            pass

    def _run(self) -> None:
        while (items := self._queue.get()) is not None:
            for ino, attr, data in items:
                try:
                    self._push(ino, attr, data)
                except Exception:  # a push is an optimisation: never let one stop the others
                    log.exception("pushing pages of node %d failed", ino)
