"""Directory listings the client keeps between READDIR requests.

Two kinds: per open directory handle (the kernel opened the directory), and per node (no-opendir
mode lists without opening; listings of subdirectories fetched ahead are kept there too, as if
their own first READDIRPLUS had fetched them).  A listing kept per node answers lookups under
its directory (``lookup``) until the directory changes (``drop``).

Lock: ``_lock`` guards the two dicts and the generation; each DirBuffer has its own lock, taken
after this one or alone.  Nothing else is called with ``_lock`` held.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bridgefs.client.dirbuf import DirBuffer, Record
from bridgefs.fuse.filesystem import Entry

NAME_MAX = 255


class Listings:
    def __init__(
        self,
        attr_ttl: Callable[[], float],
        negative_ttl: Callable[[], float],
        received: Callable[[int], None],
        give_back: Callable[[int], None],
    ):
        self._attr_ttl = attr_ttl  # how long a listing's attributes may be handed out
        self._negative_ttl = negative_ttl
        self._received = received  # a record's reference is handed to the kernel
        self._give_back_one = give_back  # a reference received that will not reach the kernel
        self._lock = threading.Lock()
        self._by_handle: dict[int, DirBuffer] = {}
        self._by_node: dict[int, DirBuffer] = {}
        self._generation = 0  # moves on at every drop: a listing fetched across one is not kept

    @property
    def generation(self) -> int:
        return self._generation

    def give_back(self, handles: list[int]) -> None:
        for handle in handles:
            self._give_back_one(handle)

    # --- open directory handles -----------------------------------------------------------------
    def opened(self, fh: int, ttl: float) -> None:
        with self._lock:
            self._by_handle[fh] = DirBuffer(plus_ttl=ttl)

    def of_handle(self, fh: int) -> DirBuffer | None:
        with self._lock:
            return self._by_handle.get(fh)

    def closed(self, fh: int) -> None:
        with self._lock:
            buf = self._by_handle.pop(fh, None)
        if buf is not None:
            self.give_back(buf.clear())

    # --- listings per node ------------------------------------------------------------------------
    def of_node(self, ino: int) -> DirBuffer:
        with self._lock:
            buf = self._by_node.get(ino)
            if buf is None:
                # Trusted as long as attributes are: in long mode, until an event or a change
                # through this client drops it.
                buf = self._by_node[ino] = DirBuffer(self._attr_ttl)
            return buf

    def has_whole(self, ino: int) -> bool:
        """Whether a whole listing of ``ino`` is kept, none of it handed out yet."""
        with self._lock:
            buf = self._by_node.get(ino)
        return buf is not None and buf.whole()

    def forget(self, ino: int) -> None:
        with self._lock:
            buf = self._by_node.pop(ino, None)
        if buf is not None:
            self.give_back(buf.clear())

    def lookup(self, parent: int, name: bytes) -> Entry | None:
        """A lookup answered from the listing kept for ``parent`` (one fetched ahead, mostly):
        the entry, now carrying the reference its record held; an absent entry (ino 0) when the
        listing is whole and lacks the name; None when it cannot say."""
        with self._lock:
            buf = self._by_node.get(parent)
        if buf is None or name in (b".", b"..") or len(name) > NAME_MAX:
            return None  # (a name too long is the server's to refuse)
        record, whole = buf.take_entry(name)
        if record is not None:
            self._received(record.handle)
            return record.entry.entry
        if whole:
            return Entry(ino=0, attr=None, entry_timeout=self._negative_ttl())
        return None

    def keep_ahead(
        self, subs: list[tuple[int, list[Record]]], generation: int
    ) -> list[tuple[int, list[Record]]]:
        """Listings of subdirectories that came with a listing, unless something changed while
        they were on the way (``generation`` is the one read before the call); returns those
        kept."""
        now = time.monotonic()
        dropped: list[int] = []
        kept = []
        with self._lock:
            stale = generation != self._generation
            for ino, records in subs:
                if stale or not records:
                    dropped.extend(r.handle for r in records if r.handle)
                    continue
                buf = self._by_node.get(ino)
                if buf is None:
                    buf = self._by_node[ino] = DirBuffer(self._attr_ttl)
                dropped.extend(
                    buf.keep(records, True, True, records[-1].entry.offset, now, ahead=True)
                )
                kept.append((ino, records))
        self.give_back(dropped)
        return kept

    def drop(self, ino: int) -> None:
        """Directory ``ino`` changed: what is kept of its listing may not start a new one."""
        with self._lock:
            self._generation += 1
            buf = self._by_node.get(ino)
        if buf is not None:
            self.give_back(buf.drop_start())

    def drop_all(self) -> None:
        with self._lock:
            self._generation += 1
            bufs = list(self._by_node.values())
        for buf in bufs:
            self.give_back(buf.drop_start())

    def reset(self) -> None:
        """The session they belonged to is gone (its references with it)."""
        with self._lock:
            self._by_handle.clear()
            self._by_node.clear()
            self._generation += 1
