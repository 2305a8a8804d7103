"""How long the kernel may trust what it is told, in one place.

While the change stream flows, every host-side change invalidates exactly what it makes stale,
so caches may live long: names, attributes and absent names for an hour, pages across opens,
listings across opendirs.  When the stream is down nothing tells the client about changes, and
the safe short timeouts (with close-to-open consistency) apply.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CacheMode:
    name: str
    entry_timeout: float
    attr_timeout: float
    negative_timeout: float  # 0: an absent name is asked for again every time
    trust_pages: bool  # keep a file's page cache across opens without comparing stamps
    cache_listings: bool  # FOPEN_CACHE_DIR + KEEP_CACHE on opendir


def short_mode(
    entry_timeout: float = 1.0, attr_timeout: float = 1.0, negative_timeout: float = 0.0
) -> CacheMode:
    return CacheMode("short", entry_timeout, attr_timeout, negative_timeout, False, False)


def long_mode(timeout: float = 3600.0) -> CacheMode:
    return CacheMode("long", timeout, timeout, timeout, True, True)


class CachePolicy:
    """The mode in force, shared by every part that answers the kernel: short until the change
    stream says it flows, short again when it breaks.  A swap is one reference assignment, so
    readers need no lock; what the old mode let the kernel keep is dropped by whoever swaps."""

    def __init__(
        self,
        entry_timeout: float = 1.0,
        attr_timeout: float = 1.0,
        negative_timeout: float = 0.0,
        long_timeout: float = 3600.0,
    ):
        self.short = short_mode(entry_timeout, attr_timeout, negative_timeout)
        self.long = long_mode(long_timeout)
        self.mode = self.short

    def use_long(self, on: bool) -> None:
        self.mode = self.long if on else self.short
