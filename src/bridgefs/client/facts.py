"""Facts a server reply carries that the FileSystem interface has no room for.

RemoteFileSystem hands them to one listener (``RemoteFileSystem.facts``): the caching layer,
which keeps state from them.  They are told on the worker thread that made the call.
"""

from __future__ import annotations

from typing import Any, Protocol

from bridgefs.fuse.filesystem import Attr, DirEntry


class ReplyFacts(Protocol):
    """What a server reply tells beyond what the FileSystem interface returns, for the layer
    that keeps state from it (caching.py).  ``NO_FACTS`` listens to none of it."""

    def dir_changing(self, parent: int) -> Any:
        """A change of ``parent``'s names begins; returns what dir_changed takes back."""

    def dir_changed(self, parent: int, token: Any, attr: Attr | None) -> None:
        """It ended; ``attr``: the directory's attributes right after it, None if unknown."""

    def names_refused(self, parent: int) -> None:
        """A change of ``parent``'s names failed (EEXIST, ENOENT, a lost connection...): the
        host's names there may differ from what the client thought."""

    def file_made(self, ino: int) -> None:
        """``ino`` is a file a create just made (it existed nowhere before)."""

    def listed_ahead(self, ino: int, entries: list[DirEntry]) -> None:
        """The listing of directory ``ino`` arrived before the kernel asked for it."""


class _NoFacts:
    def dir_changing(self, parent: int) -> Any:
        return None

    def dir_changed(self, parent: int, token: Any, attr: Attr | None) -> None:
        pass

    def names_refused(self, parent: int) -> None:
        pass

    def file_made(self, ino: int) -> None:
        pass

    def listed_ahead(self, ino: int, entries: list[DirEntry]) -> None:
        pass


NO_FACTS: ReplyFacts = _NoFacts()
