"""What one directory handle fetched from the server but the FUSE layer has not consumed yet.

A ReadDir round trip returns many records, but the kernel's buffer takes only a few dozen per
call, and the FUSE layer stops iterating when it is full.  The rest is kept here, keyed by the
cookie each record starts at, so the next readdir call at that cookie costs no round trip.  The
last record handed out is kept too: the layer may have taken it and found it did not fit, and
will then ask again from that record's cookie.

Readdirplus records carry server handles whose reference the server already counted.  A record
is counted as received the first time it is handed out; records dropped without being handed
out (stale, released, or a seek elsewhere) are given back with Forget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bridgefs.fuse.filesystem import DirEntry


@dataclass(slots=True)
class Record:
    start: int  # cookie this record is read at
    entry: DirEntry  # entry.offset is the cookie after it
    handle: int  # server handle whose reference the record carries, 0 for none
    counted: bool = False


class DirBuffer:
    def __init__(self, plus_ttl: float | Callable[[], float]):
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._plus = False
        self._eof = False
        self._end: int | None = None  # cookie after the last record, when the server said eof
        self._fetched = 0.0
        self._plus_ttl = plus_ttl
        # Records kept as fetched ahead and untouched since: only those may answer lookups (a
        # listing fetched across a change of the directory is never kept as such).
        self._ahead = False

    def take(self, cookie: int, plus: bool) -> tuple[list[Record], bool, float, list[int]]:
        """(records from ``cookie`` on, whether the server said eof after them, when they were
        fetched, handles of dropped uncounted records to give back)."""
        with self._lock:
            records, self._records = self._records, []
            eof, end, fetched, same_kind = self._eof, self._end, self._fetched, self._plus == plus
            self._ahead = False
        ttl = self._plus_ttl() if callable(self._plus_ttl) else self._plus_ttl
        fresh = not plus or time.monotonic() - fetched <= ttl
        if same_kind and eof and cookie == end:
            return [], True, fetched, _uncounted(records)
        index = next((i for i, r in enumerate(records) if r.start == cookie), None)
        if index is not None and same_kind and fresh:
            return records[index:], eof, fetched, _uncounted(records[:index])
        return [], False, 0.0, _uncounted(records)

    def keep(
        self,
        records: list[Record],
        plus: bool,
        eof: bool,
        end: int,
        fetched: float,
        ahead: bool = False,
    ) -> list[int]:
        """Store leftovers (``end``: the cookie after the last record fetched; ``ahead``: a
        whole listing fetched ahead); returns handles of anything it displaced, to give back."""
        with self._lock:
            old, self._records = self._records, records
            self._plus, self._eof, self._end, self._fetched = plus, eof, end, fetched
            self._ahead = ahead
        return _uncounted(old)

    def iterate(
        self,
        offset: int,
        plus: bool,
        fetch: Callable[[int], tuple[list[Record], bool]],
        received: Callable[[int], None],
        give_back: Callable[[list[int]], None],
    ) -> Iterator[DirEntry]:
        """The records from cookie ``offset`` on: buffered ones first, then ``fetch(cookie)``
        batches.  ``received(handle)`` counts a reference the first time its record is handed
        out; ``give_back(handles)`` returns references the caller will never see."""
        records, eof, fetched, dropped = self.take(offset, plus)
        give_back(dropped)
        cookie, i = offset, 0
        try:
            while True:
                if i == len(records):
                    if eof:
                        return
                    records, eof = fetch(cookie)
                    fetched, i = time.monotonic(), 0
                    if not records:
                        eof = True
                        return
                rec = records[i]
                i += 1
                if rec.handle and not rec.counted:
                    received(rec.handle)
                    rec.counted = True
                cookie = rec.entry.offset
                yield rec.entry
        finally:
            # Runs when the caller stops early too (the generator is closed or collected).
            # Keep the last record handed out: the caller may not have had room for it.
            end = records[-1].entry.offset if records else cookie
            give_back(self.keep(records[max(i - 1, 0) :], plus, eof, end, fetched))

    def take_entry(self, name: bytes) -> tuple[Record | None, bool]:
        """For a lookup of ``name``: (its record, now holding the entry and the reference that
        came with it, which the kept record no longer carries; whether the kept records are the
        whole listing, fresh enough to say that a name missing from them does not exist)."""
        with self._lock:
            ttl = self._plus_ttl() if callable(self._plus_ttl) else self._plus_ttl
            if not self._ahead or time.monotonic() - self._fetched > ttl:
                return None, False
            whole = bool(self._records) and self._records[0].start == 0 and self._eof
            for rec in self._records:
                if rec.entry.name != name:
                    continue
                if not rec.handle or rec.counted or rec.entry.entry is None:
                    return None, False  # handed out already: the server says what it is now
                taken = Record(rec.start, rec.entry, rec.handle)
                # A later listing hands the name out without an entry: the kernel has it.
                rec.entry = DirEntry(
                    rec.entry.name, rec.entry.ino, rec.entry.dtype, rec.entry.offset
                )
                rec.handle = 0
                return taken, whole
            return None, whole

    def whole(self) -> bool:
        """Whether the records kept are a whole listing, from its start to its end."""
        with self._lock:
            return bool(self._records) and self._records[0].start == 0 and self._eof

    def drop_start(self) -> list[int]:
        """Forget records a new listing (from cookie 0) would be answered with: the directory
        changed.  A listing already under way goes on from what it was given, as from an open
        directory stream."""
        with self._lock:
            if not self._records or self._records[0].start != 0:
                return []
            old, self._records = self._records, []
            self._eof, self._end, self._ahead = False, None, False
        return _uncounted(old)

    def clear(self) -> list[int]:
        with self._lock:
            old, self._records = self._records, []
        return _uncounted(old)


def _uncounted(records: list[Record]) -> list[int]:
    return [r.handle for r in records if r.handle and not r.counted]
