"""Waiting on a condition, for tests that must pass on a loaded machine.

A test never sleeps a fixed time hoping something happened meanwhile: it waits until it did.  The
default bound is generous on purpose: it only decides how long a broken build takes to fail, and
a busy machine (two suites at once, a busy loop on every core) must never reach it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

PATIENCE = 60.0


def wait_until(
    check: Callable[[], T], timeout: float = PATIENCE, what: str = "condition", every: float = 0.02
) -> T:
    """Call ``check`` until it returns something true (an OSError counts as false); return it.

    Fails the test with ``what`` and the last value or error seen once ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except OSError as exc:
            last = exc
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not true after {timeout} s (last: {last!r})")
        time.sleep(every)


def inotify_watched_inodes(pid: int) -> set[int] | None:
    """Inode numbers the process watches with inotify (from /proc/PID/fdinfo); None if it
    holds no inotify descriptor at all."""
    found = None
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("inotify wd:"):
                        found = found or set()
                        found.add(int(line.split("ino:")[1].split()[0], 16))
        except OSError:
            pass
    return found
