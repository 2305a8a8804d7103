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


class DirListing:
    """Names of one open directory: (name, d_ino, dtype) records in cookie order."""

    def __init__(self, fd: int, self_ino: int, parent_ino: int):
        self.fd = fd
        self.lock = threading.Lock()  # one reader at a time per handle
        self._dots = [(b".", self_ino, DT_DIR), (b"..", parent_ino, DT_DIR)]
        self._records: list[tuple[bytes, int, int]] = []
        self._scan: os._ScandirIterator[str] | None = None
        self._started = False

    def _restart(self) -> None:
        if self._scan is not None:
            self._scan.close()
        # scandir dups the fd, and dups share the file offset: rewind so a new scan starts over.
        os.lseek(self.fd, 0, os.SEEK_SET)
        self._records = list(self._dots)
        self._scan = os.scandir(self.fd)
        self._started = True

    def _fill(self, upto: int) -> None:
        while len(self._records) < upto and self._scan is not None:
            entry = next(self._scan, None)
            if entry is None:
                self._scan.close()
                self._scan = None
                break
            self._records.append((os.fsencode(entry.name), entry.inode(), _dtype_of(entry)))

    def read(self, cookie: int, count: int) -> tuple[list[tuple[int, bytes, int, int]], bool]:
        """Up to ``count`` records from ``cookie``: ([(cookie, name, ino, dtype)], eof).
        Call with ``lock`` held."""
        if cookie == 0 or not self._started:
            self._restart()
        self._fill(cookie + count)
        chunk = self._records[cookie : cookie + count]
        eof = self._scan is None and cookie + len(chunk) >= len(self._records)
        return [(cookie + i, *rec) for i, rec in enumerate(chunk)], eof

    def close(self) -> None:
        if self._scan is not None:
            self._scan.close()
            self._scan = None
