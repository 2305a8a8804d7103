"""The change journal: which paths changed, for a file-system monitor (`bridgefs fsmonitor`,
git's ``core.fsmonitor``).

Fed by the change stream (host changes) and by the journaling layer (changes made through this
mount, which the server does not echo back).  A token names a point in the journal: this
client's epoch and a sequence number.  The journal answers "these paths" only when it is sure
nothing else changed since a token; otherwise "everything" (None):

- the token is not this client's (another mount, an earlier run of this client, git's own
  first timestamp);
- the change stream was down at any moment since the token (host changes were not seen), an
  overflow lost some, or a change through the mount had no known path;
- the journal's bound was passed and changes after the token were dropped.

Paths are bytes relative to the share's root, names joined by ``/``; a directory that changed as
a whole (made, removed, moved) is also recorded with a trailing ``/`` so that everything under
it counts as changed.  The root itself is ``b""``.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

CAPACITY = 100_000  # distinct paths kept; an answer past them is "everything"
MAX_ANSWER = 50_000  # past this many paths "everything" is cheaper for the asker too

Paths = list[bytes] | None  # None: everything may have changed


class ChangeJournal:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._lock = threading.Lock()
        self._epoch = secrets.token_hex(8)
        self._capacity = capacity
        self._seq = 0
        # Tokens older than this cannot be answered: something after them was lost.
        self._horizon = 0
        # path -> the sequence number of its latest change, oldest first: a path changed again
        # moves to the end, so a file written in many pieces (or a log written all day) is one
        # entry, and the journal's bound counts paths rather than changes.
        self._log: OrderedDict[bytes, int] = OrderedDict()
        self._following = False  # host changes arrive (the stream is up)

    # --- fed by the stream and the layer -------------------------------------------------------
    def record(self, *paths: bytes) -> None:
        with self._lock:
            for path in paths:
                self._seq += 1
                self._log[path] = self._seq
                self._log.move_to_end(path)
                if len(self._log) > self._capacity:
                    self._horizon = self._log.popitem(last=False)[1]

    def lost(self) -> None:
        """Changes may have happened unseen: every token handed out so far answers everything."""
        with self._lock:
            self._lose_locked()

    def following(self, on: bool) -> None:
        """The change stream went up or down; either way what came before cannot be trusted."""
        with self._lock:
            self._following = on
            self._lose_locked()

    def _lose_locked(self) -> None:
        self._seq += 1
        self._horizon = self._seq
        self._log.clear()

    # --- asked by the monitor ------------------------------------------------------------------
    def since(self, token: str, under: bytes = b"") -> tuple[str, Paths]:
        """(a token for now, the paths under ``under`` changed since ``token``, relative to
        ``under``), or None for the paths when the journal cannot be sure."""
        with self._lock:
            now = f"bridgefs:{self._epoch}:{self._seq}"
            seq = self._seq_of(token)
            if not self._following or seq is None or not self._horizon <= seq <= self._seq:
                return now, None
            changed = []
            for path, n in reversed(self._log.items()):
                if n <= seq:
                    break
                changed.append(path)
        return now, _under(changed, under)

    def _seq_of(self, token: str) -> int | None:
        parts = token.split(":")
        if len(parts) != 3 or parts[0] != "bridgefs" or parts[1] != self._epoch:
            return None
        try:
            return int(parts[2])
        except ValueError:
            return None


def _under(changed: list[bytes], under: bytes) -> Paths:
    """``changed`` relative to ``under``, each once; None if one of them contains ``under``
    (the folder asked about, or one above it, was replaced or moved)."""
    out: dict[bytes, None] = {}
    prefix = under + b"/" if under else b""
    for path in changed:
        bare = path.rstrip(b"/")
        if not bare or bare == under or under.startswith(bare + b"/"):
            return None
        if path.startswith(prefix):
            out[path[len(prefix) :]] = None
            if len(out) > MAX_ANSWER:
                return None
    return list(out)
