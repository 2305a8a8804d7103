"""A directory listing behind one directory handle, read lazily and addressed by cookies.

Cookies are positions in the listing as this handle has read it: "." is 0, ".." is 1, the n-th
name from the host is n + 2, and every record carries the cookie of the record after it.  The
listing is kept as it is read, so the kernel can resume at any cookie it was given (seekdir)
without the host's own telldir values; reading from cookie 0 again starts a fresh listing, which
is how rewinddir shows names created since.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict

DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 6, 8, 10, 12


def dtype_of_mode(mode: int) -> int:
    return stat.S_IFMT(mode) >> 12


def _dtype_of(entry: os.DirEntry[str]) -> int:
    # DirEntry answers these from d_type without a stat when the host filesystem fills d_type.
    if entry.is_symlink():
        return DT_LNK
    if entry.is_dir(follow_symlinks=False):
        return DT_DIR
    if entry.is_file(follow_symlinks=False):
        return DT_REG
    return DT_UNKNOWN


WINDOW = 2048  # names a listing keeps: twice the most one ReadDir returns


class ListingBudget:
    """Names all of one session's listings keep: at most ``limit``."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._held: OrderedDict[DirListing, int] = OrderedDict()  # least recently read first
        self.total = 0
        self.evictions = 0

    def charge(self, listing: DirListing, held: int) -> None:
        """``listing`` now keeps ``held`` names (call with its lock held); others give theirs
        up, least recently read first, until the total is within the limit."""
        victims: list[DirListing] = []
        with self._lock:
            self.total += held - self._held.pop(listing, 0)
            self._held[listing] = held
            if self.total <= self.limit:
                return
            for other in list(self._held):
                if self.total <= self.limit:
                    break
                if other is not listing and other.lock.acquire(blocking=False):
                    self.total -= self._held.pop(other)
                    victims.append(other)
        for other in victims:
            try:
                other.drop()
            finally:
                other.lock.release()
        self.evictions += len(victims)

    def remove(self, listing: DirListing) -> None:
        with self._lock:
            self.total -= self._held.pop(listing, 0)


class DirListing:
    """Names of one open directory: (name, d_ino, dtype) records in cookie order."""

    def __init__(self, fd: int, self_ino: int, parent_ino: int):
        self.fd = fd
        self.lock = threading.Lock()  # one reader at a time per handle
        self.budget: ListingBudget | None = None  # set when a session's table takes the handle
        self._dots = [(b".", self_ino, DT_DIR), (b"..", parent_ino, DT_DIR)]
        self._names: list[tuple[bytes, int, int]] = []  # names self._base, self._base + 1, ...
        self._base = 0
        self._scan: os._ScandirIterator[str] | None = None
        self._done = False  # the scan reached the end (names past the window are all known)
        self._started = False

    def _rescan(self) -> None:
        if self._scan is not None:
            self._scan.close()
        # scandir dups the fd, and dups share the file offset: rewind so a new scan starts over.
        os.lseek(self.fd, 0, os.SEEK_SET)
        self._names = []
        self._base = 0
        self._done = False
        self._scan = os.scandir(self.fd)
        self._started = True

    def _next(self) -> tuple[bytes, int, int] | None:
        if self._scan is None:
            return None
        entry = next(self._scan, None)
        if entry is None:
            self._scan.close()
            self._scan = None
            self._done = True
            return None
        return os.fsencode(entry.name), entry.inode(), _dtype_of(entry)

    def _fill(self, start: int, upto: int) -> None:
        """Have names ``start`` .. ``upto`` - 1 in the window, as far as the directory has them."""
        if start < self._base or (not self._done and self._scan is None):
            self._rescan()  # before the window, or dropped to keep within the budget
        while self._base + len(self._names) < upto:
            rec = self._next()
            if rec is None:
                break
            self._names.append(rec)
            if len(self._names) > WINDOW:
                drop = min(len(self._names) - WINDOW, max(0, start - self._base))
                if drop:
                    del self._names[:drop]
                    self._base += drop

    def read(self, cookie: int, count: int) -> tuple[list[tuple[int, bytes, int, int]], bool]:
        """Up to ``count`` records from ``cookie``: ([(cookie, name, ino, dtype)], eof).
        Call with ``lock`` held."""
        if cookie == 0 or not self._started:
            self._rescan()
        out: list[tuple[int, bytes, int, int]] = []
        c = cookie
        while c < 2 and len(out) < count:
            out.append((c, *self._dots[c]))
            c += 1
        if len(out) < count:
            first = c - 2
            self._fill(first, first + count - len(out))
            lo = first - self._base
            for i, rec in enumerate(self._names[lo : lo + count - len(out)]):
                out.append((c + i, *rec))
        end = self._base + len(self._names) + 2
        eof = self._done and cookie + len(out) >= end
        if self.budget is not None:
            self.budget.charge(self, len(self._names))
        return out, eof

    def drop(self) -> None:
        """Give up the window and the scan (the next read scans again); call with ``lock``."""
        if self._scan is not None:
            self._scan.close()
            self._scan = None
        self._names = []
        self._base = 0
        self._done = False

    def close(self) -> None:
        if self._scan is not None:
            self._scan.close()
            self._scan = None
        if self.budget is not None:
            self.budget.remove(self)
