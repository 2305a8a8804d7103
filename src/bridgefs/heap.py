"""Keep freed memory for reuse instead of handing it back to the kernel at once.

Every Read and Write moves a megabyte through several buffers (the FUSE frame, the protobuf
message, gRPC's slices), freed right after.  glibc's defaults give blocks that large back to the
kernel when freed (as mmap'd chunks, or by trimming the heap with madvise) and take fresh pages
at the next allocation: 256 page faults and a zeroed page each, per buffer, per request.  That
was most of a 1 MiB Write's round trip (5-6 ms of it, against 1.5 ms once memory is kept).  The
thresholds below keep up to TRIM bytes free at the top of each malloc arena, so the process holds
at most a few tens of MiB more than it uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
TRIM = 16 << 20
MMAP = 4 << 20  # above the largest message (MAX_MESSAGE): those too come from the arenas

_done = False


def keep_freed_memory() -> bool:
    """Set the thresholds for this process (glibc only; elsewhere nothing happens).  True when
    they are in effect."""
    global _done
    if _done:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM))
    return _done
