"""Numbers from the wire checked at the servicer's boundary.

The contract's offsets and sizes are uint64 and its masks uint32, but the host's off_t is
signed 64 bits and its flags C ints: a value past what the system call takes would otherwise
fail deep inside as an OverflowError (answered EIO, with a traceback).  Each check raises the
errno the kernel gives for the same mistake.
"""

from __future__ import annotations

import errno
import os

OFF_MAX = (1 << 63) - 1  # the largest off_t


def offset(value: int, what: str = "offset") -> int:
    """A file position: EINVAL past off_t (the kernel's answer to a negative one)."""
    if value > OFF_MAX:
        raise OSError(errno.EINVAL, f"{what} {value} is past the largest file offset")
    return value


def end(start: int, length: int, what: str = "offset + length") -> None:
    """A range's end: EFBIG past the largest file size."""
    if start + length > OFF_MAX:
        raise OSError(errno.EFBIG, f"{what} {start + length} is past the largest file size")


def extent(start: int, length: int) -> tuple[int, int]:
    """(offset, length) of a range: EINVAL for an offset past off_t, EFBIG for an end past it."""
    offset(start)
    end(start, length)
    return start, length


def size(value: int) -> int:
    """A file size to truncate to: EFBIG past the largest file size."""
    if value > OFF_MAX:
        raise OSError(errno.EFBIG, f"size {value} is past the largest file size")
    return value


def count(value: int) -> int:
    """A byte count the kernel takes as a size_t but Python as a signed one: EOVERFLOW past it."""
    if value > OFF_MAX:
        raise OSError(errno.EOVERFLOW, f"length {value} is too large")
    return value


def mask(value: int, allowed: int, what: str) -> int:
    """Flags or a mask: EINVAL for a bit the call does not know."""
    if value & ~allowed:
        raise OSError(errno.EINVAL, f"unknown {what} bits {value & ~allowed:#x}")
    return value


ACCESS_BITS = os.R_OK | os.W_OK | os.X_OK
XATTR_BITS = 1 | 2  # XATTR_CREATE, XATTR_REPLACE
WHENCES = frozenset((os.SEEK_SET, os.SEEK_CUR, os.SEEK_END, 3, 4))  # SEEK_DATA, SEEK_HOLE


def whence(value: int) -> int:
    if value not in WHENCES:
        raise OSError(errno.EINVAL, f"whence {value} is none of SEEK_SET..SEEK_HOLE")
    return value
