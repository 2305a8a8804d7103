"""Helpers of the event tests: the mount's status, waiting for changes, an inotifywait."""

import json
import os
import pathlib
import queue
import subprocess
import sys
import threading
import time
import uuid

from waiting import PATIENCE, inotify_watched_inodes, wait_until


def status(mnt) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bridgefs", "status", str(mnt), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def drop_kernel_caches(what: int = 3) -> None:
    """``echo what > drop_caches``: 2 drops names and inodes, 3 pages too."""
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write(str(what))


def stats(mnt, reset: bool = False) -> dict:
    """`bridgefs stats --json`: FUSE requests and round trips since the last reset (a reset
    prints nothing: an empty dict)."""
    out = subprocess.run(
        [sys.executable, "-m", "bridgefs", "stats", str(mnt), "--reset" if reset else "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout) if not reset else {}


def resident_bytes(path) -> int:
    """How much of ``path`` is in the page cache (`fincore`: mincore, so nothing is read)."""
    out = subprocess.run(
        ["fincore", "--json", "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(out.stdout)["fincore"][0]["res"])


def wait_for_events(mnt, timeout: float = PATIENCE) -> None:
    wait_until(
        lambda: status(mnt).get("events") == "flowing",
        timeout,
        what=f"the change stream of {mnt} comes up",
        every=0.1,
    )


# What one wait_settled adds to the client's `received` count: its marker's CREATED and DELETED.
SETTLE_CHANGES = 2
SETTLE_PREFIX = ".settled-"


def wait_settled(host, mnt, timeout: float = 300) -> dict:
    """Wait until the client has applied every change the server sent before this call; returns
    the mount's status then.

    A marker directory is made on the host and removed again.  The server reports changes in
    order and the client applies them in order, so once the mount has seen the marker come (its
    absent name, cached for as long as changes flow, shows up) and go, every earlier change was
    applied.  The marker's path starts with SETTLE_PREFIX and adds SETTLE_CHANGES to
    `received`; a watcher inside the mount may hear it."""
    host, mnt = pathlib.Path(host), pathlib.Path(mnt)
    before = status(mnt)
    # With short caches an absent name is asked for again every time: showing up proves nothing.
    assert before.get("events") == "flowing", before
    marker = f"{SETTLE_PREFIX}{uuid.uuid4().hex[:12]}"
    assert not (mnt / marker).exists()  # the kernel now caches its absence until the change
    os.mkdir(host / marker)
    wait_until(
        lambda: (mnt / marker).exists() and status(mnt)["received"] >= before["received"] + 1,
        timeout,
        what=f"the client applies every change up to {marker}'s creation",
    )
    os.rmdir(host / marker)
    wait_until(
        lambda: (
            not (mnt / marker).exists()
            and status(mnt)["received"] >= before["received"] + SETTLE_CHANGES
        ),
        timeout,
        what=f"the client applies the removal of {marker}",
    )
    return status(mnt)


def not_settling(path: str) -> bool:
    return not os.path.basename(path).startswith(SETTLE_PREFIX)


class Inotifywait:
    """`inotifywait -m -r` on the mount, its events as (EVENTS, path relative to the mount)."""

    def __init__(self, root: pathlib.Path):
        self.root = str(root)
        self.proc = subprocess.Popen(
            ["inotifywait", "-m", "-r", "--format", "%e|%w%f", self.root],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue = queue.Queue()
        while True:
            line = self.proc.stderr.readline()
            if not line or "Watches established" in line:
                break
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            events, _, path = line.rstrip("\n").partition("|")
            self.events.put((set(events.split(",")), os.path.relpath(path, self.root)))

    def until(self, event: str, path: str, timeout: float = PATIENCE) -> list:
        """Every event up to and including the first ``event`` on ``path``."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            try:
                flags, got = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {event} for {path} within {timeout} s; saw "
                    f"{[(sorted(f), p) for f, p in seen]}"
                ) from None
            seen.append((flags, got))
            if event in flags and got == path:
                return seen

    def expect(self, event: str, path: str, timeout: float = PATIENCE) -> set:
        """Wait for ``event`` on ``path``; returns that event's flags."""
        return self.until(event, path, timeout)[-1][0]

    def watching(self, path, timeout: float = PATIENCE) -> None:
        """Wait until inotifywait watches the directory ``path`` (with -r it adds a watch for
        each new directory once it hears of it)."""
        ino = os.stat(path).st_ino
        wait_until(
            lambda: ino in (inotify_watched_inodes(self.proc.pid) or ()),
            timeout,
            what=f"inotifywait watches {path}",
        )

    def close(self):
        self.proc.terminate()
        self.proc.wait(5)


def assert_native_sequence(events: list, existing=()) -> set:
    """``events`` (as Inotifywait gives them) are a sequence native inotify could give: a name is
    deleted or moved away only while it is there (``existing``, or created or moved in before).
    Returns the names there at the end."""
    present = set(existing)
    for flags, path in events:
        if "CREATE" in flags or "MOVED_TO" in flags:
            present.add(path)
        elif "DELETE" in flags or "MOVED_FROM" in flags:
            assert path in present, f"{sorted(flags)} of {path}, never there: {events}"
            present.discard(path)
    return present
