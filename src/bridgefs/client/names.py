"""Which names the kernel may have cached, so that a host-side change found by path can be
turned into exactly the invalidations it needs.

Every entry this client hands the kernel is recorded as (parent node, name) -> node; entries go
when the kernel forgets the node or the name changes through this client.  Negative entries
(absent names the kernel was told to remember) are recorded too, up to a bound: past it, the
client stops handing out long-lived negative entries, because it could not find them again.
"""

from __future__ import annotations

import threading

from bridgefs.fuse.filesystem import ROOT_ID

MAX_NEGATIVES = 100_000


class NameTable:
    def __init__(self, max_negatives: int = MAX_NEGATIVES) -> None:
        self._lock = threading.Lock()
        self._child: dict[tuple[int, bytes], int] = {}
        self._names: dict[int, set[tuple[int, bytes]]] = {}
        self._negative: set[tuple[int, bytes]] = set()
        self._max_negatives = max_negatives

    def add(self, parent: int, name: bytes, ino: int) -> None:
        key = (parent, name)
        with self._lock:
            self._negative.discard(key)
            old = self._child.get(key)
            if old is not None and old != ino:
                self._unlink_locked(key, old)
            self._child[key] = ino
            self._names.setdefault(ino, set()).add(key)

    def add_negative(self, parent: int, name: bytes) -> bool:
        """Remember an absent name; False when the table is full (do not cache it long)."""
        with self._lock:
            if len(self._negative) >= self._max_negatives:
                return False
            self._negative.add((parent, name))
            return True

    def remove(self, parent: int, name: bytes) -> int | None:
        key = (parent, name)
        with self._lock:
            self._negative.discard(key)
            ino = self._child.get(key)
            if ino is not None:
                self._unlink_locked(key, ino)
            return ino

    def move(
        self, parent: int, name: bytes, new_parent: int, new_name: bytes, exchange: bool = False
    ) -> None:
        with self._lock:
            src = self._child.get((parent, name))
            dst = self._child.get((new_parent, new_name))
            for key, ino in (((parent, name), src), ((new_parent, new_name), dst)):
                if ino is not None:
                    self._unlink_locked(key, ino)
            if src is not None:
                self._link_locked((new_parent, new_name), src)
            if exchange and dst is not None:
                self._link_locked((parent, name), dst)

    def forget(self, ino: int) -> None:
        with self._lock:
            for key in self._names.pop(ino, ()):
                if self._child.get(key) == ino:
                    del self._child[key]

    def lookup(self, parent: int, name: bytes) -> int | None:
        with self._lock:
            return self._child.get((parent, name))

    def resolve(self, path: list[bytes]) -> list[int | None]:
        """The node of each prefix of ``path`` from the root: [root, n1, n2, ...]; None from the
        first name the kernel cannot have cached (nothing deeper can be cached either)."""
        nodes: list[int | None] = [ROOT_ID]
        with self._lock:
            current: int | None = ROOT_ID
            for name in path:
                current = self._child.get((current, name)) if current is not None else None
                nodes.append(current)
        return nodes

    def names_of(self, ino: int) -> list[tuple[int, bytes]]:
        with self._lock:
            return list(self._names.get(ino, ()))

    def oldest(self, n: int) -> list[tuple[int, bytes]]:
        """The ``n`` names recorded longest ago (the table keeps insertion order)."""
        with self._lock:
            out: list[tuple[int, bytes]] = []
            for key in self._child:
                if len(out) >= n:
                    break
                out.append(key)
            return out

    def snapshot(self) -> tuple[list[tuple[int, bytes]], list[int], list[tuple[int, bytes]]]:
        """(every cached name, every node, every negative name): to drop them all."""
        with self._lock:
            return list(self._child), list(self._names), list(self._negative)

    def clear_negatives(self) -> None:
        with self._lock:
            self._negative.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._child)

    def _link_locked(self, key: tuple[int, bytes], ino: int) -> None:
        self._child[key] = ino
        self._names.setdefault(ino, set()).add(key)

    def _unlink_locked(self, key: tuple[int, bytes], ino: int) -> None:
        del self._child[key]
        names = self._names.get(ino)
        if names is not None:
            names.discard(key)
            if not names:
                del self._names[ino]
