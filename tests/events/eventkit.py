"""Helpers of the event tests: the mount's status, waiting for changes, an inotifywait."""

import json
import os
import pathlib
import queue
import subprocess
import sys
import threading
import time


def status(mnt) -> dict:
    out = subprocess.run([sys.executable, "-m", "bridgefs", "status", str(mnt), "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def drop_kernel_caches(what: int = 3) -> None:
    """``echo what > drop_caches``: 2 drops names and inodes, 3 pages too."""
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write(str(what))


def stats(mnt, reset: bool = False) -> dict:
    """`bridgefs stats --json`: FUSE requests and round trips since the last reset (a reset
    prints nothing: an empty dict)."""
    out = subprocess.run([sys.executable, "-m", "bridgefs", "stats", str(mnt),
                          "--reset" if reset else "--json"], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout) if not reset else {}


def wait_for_events(mnt, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if status(mnt).get("events") == "flowing":
            return
        time.sleep(0.1)
    raise AssertionError(f"the change stream of {mnt} did not come up: {status(mnt)}")


def wait_settled(mnt, quiet: float = 1.0, timeout: float = 120) -> dict:
    """Wait until the client has applied every change sent so far (none came for ``quiet`` s)."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = status(mnt)
        if now.get("received") != last:
            last, since = now.get("received"), time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
        time.sleep(0.1)
    raise AssertionError(f"changes kept coming for {timeout} s: {status(mnt)}")


class Inotifywait:
    """`inotifywait -m -r` on the mount, its events as (EVENTS, path relative to the mount)."""

    def __init__(self, root: pathlib.Path):
        self.root = str(root)
        self.proc = subprocess.Popen(
            ["inotifywait", "-m", "-r", "--format", "%e|%w%f", self.root],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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

    def expect(self, event: str, path: str, timeout: float = 10) -> set:
        """Wait for ``event`` on ``path``; returns that event's flags."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                flags, got = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append((sorted(flags), got))
            if event in flags and got == path:
                return flags
        raise AssertionError(f"no {event} for {path}; saw {seen}")

    def drain(self, settle: float = 0.5) -> list:
        out = []
        while True:
            try:
                flags, path = self.events.get(timeout=settle)
            except queue.Empty:
                return out
            out.append((flags, path))

    def close(self):
        self.proc.terminate()
        self.proc.wait(5)
