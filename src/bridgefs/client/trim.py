"""Keeping the nodes the kernel holds (each an open descriptor on the host) under the server's
capacity: past 80% of it, the oldest quarter of the names is dropped from the kernel's cache,
which then forgets the nodes nothing uses.  Runs on its own thread: a notification must never
wait on a request that waits on it."""

from __future__ import annotations

import logging
import threading

from bridgefs.client.invalidate import Invalidator
from bridgefs.client.lookups import LookupCounts
from bridgefs.client.names import NameTable

log = logging.getLogger("bridgefs.client")

INTERVAL = 0.5
HIGH_WATER = 0.8


class Trimmer:
    def __init__(
        self, counts: LookupCounts, max_nodes: int, names: NameTable, invalidate: Invalidator
    ):
        self._counts = counts
        self._max_nodes = max_nodes
        self._names = names
        self._invalidate = invalidate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bridgefs-trim", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            held = self._counts.held()
            if held > HIGH_WATER * self._max_nodes:
                victims = self._names.oldest(max(1, self._max_nodes // 4))
                log.info(
                    "holding %d of %d nodes the server allows: dropping %d old names",
                    held,
                    self._max_nodes,
                    len(victims),
                )
                for parent, name in victims:
                    self._invalidate.entry(parent, name)
