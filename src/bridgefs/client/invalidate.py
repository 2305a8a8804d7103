"""Telling the kernel what is stale, and dropping what the client itself keeps of it.

``KernelNotifier`` writes notifications once the daemon attached the mount; ``Invalidator``
turns "this name / node / everything changed" into the notifications plus the drops of every
part that keeps state (the caching layer, listings, the name table's absent names).

Runs on the change-stream and trim threads, never on a FUSE worker: a notification may wait on
a request that waits on it.  Lock order: ``KernelNotifier.lock`` is taken last (after the
parts' own locks were released; the page pusher takes it and then reads attributes, whose lock
is a leaf).
"""

from __future__ import annotations

import threading
from typing import Protocol

from bridgefs.client.listings import Listings
from bridgefs.client.names import NameTable
from bridgefs.fuse import notify
from bridgefs.fuse.filesystem import ROOT_ID, Notifier


class KernelNotifier:
    def __init__(self) -> None:
        self.lock = threading.Lock()  # one notification at a time; see the page pusher
        self._send: Notifier | None = None

    def attach(self, send: Notifier) -> None:
        self._send = send

    @property
    def attached(self) -> bool:
        return self._send is not None

    def send(self, chunks: list[bytes]) -> bool:
        """False when not attached, or the kernel had nothing to drop."""
        with self.lock:
            return self.send_locked(chunks)

    def send_locked(self, chunks: list[bytes]) -> bool:
        send = self._send
        return send is not None and send(chunks)


class KeepsNodes(Protocol):
    """A part that keeps state per node (caching.py)."""

    def drop_node(self, ino: int) -> None: ...
    def drop_dir_names(self, ino: int) -> None: ...
    def drop_everything(self) -> None: ...


class Invalidator:
    def __init__(
        self, notifier: KernelNotifier, names: NameTable, listings: Listings, keeper: KeepsNodes
    ):
        self.notifier = notifier
        self.names = names
        self.listings = listings
        self.keeper = keeper

    def entry(self, parent: int, name: bytes) -> None:
        """The name ``name`` in ``parent`` may be stale."""
        self.keeper.drop_dir_names(parent)
        self.listings.drop(parent)
        self.notifier.send(notify.inval_entry(parent, name))

    def inode(self, ino: int, offset: int = 0) -> None:
        """Node ``ino`` changed: attributes, and pages from ``offset`` (-1: attributes only)."""
        self.keeper.drop_node(ino)
        self.listings.drop(ino)
        self.notifier.send(notify.inval_inode(ino, offset, 0))

    def listing(self, ino: int) -> None:
        self.listings.drop(ino)

    def listings_all(self) -> None:
        self.listings.drop_all()

    def everything(self) -> None:
        self.keeper.drop_everything()
        self.listings.drop_all()
        names, nodes, negatives = self.names.snapshot()
        self.names.clear_negatives()
        for parent, name in names + negatives:
            self.entry(parent, name)
        for ino in [ROOT_ID, *nodes]:
            self.inode(ino, 0)
