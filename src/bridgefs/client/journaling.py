"""The layer that writes changes made through this mount into the change journal (journal.py):
the server does not echo a client's own changes back on its stream, so the journal hears of
them here.  It sits in front of the naming layer, so a name about to go is still known; the
kernel names nodes, and the name table (names.py) turns them back into paths.  A change whose
path is not known makes the journal answer "everything" for earlier tokens."""

from __future__ import annotations

from bridgefs.client.journal import ChangeJournal
from bridgefs.client.layer import Layer
from bridgefs.client.names import NameTable
from bridgefs.fuse.filesystem import (
    ROOT_ID,
    AttrReply,
    Context,
    Entry,
    FileSystem,
    Opened,
    SetAttr,
)

MAX_PATHS = 16  # hard links (or names not yet dropped) a node may be known by
MAX_DEPTH = 4096


def paths_of(names: NameTable, ino: int, depth: int = 0) -> list[bytes] | None:
    """Every path the kernel may know ``ino`` by; None when it knows none, or too many."""
    if ino == ROOT_ID:
        return [b""]
    if depth > MAX_DEPTH:
        return None
    out: list[bytes] = []
    for parent, name in names.names_of(ino):
        above = paths_of(names, parent, depth + 1)
        if above is None:
            return None
        out += [_join(path, name) for path in above]
        if len(out) > MAX_PATHS:
            return None
    return out or None


def _join(path: bytes, name: bytes) -> bytes:
    return path + b"/" + name if path else name


class JournalingLayer(Layer):
    def __init__(self, inner: FileSystem, names: NameTable, journal: ChangeJournal):
        super().__init__(inner)
        self.names = names
        self.journal = journal

    def _at(self, parent: int, name: bytes, whole: bool = False) -> list[bytes] | None:
        """The paths of ``name`` in ``parent``; ``whole``: also as a folder whose every path
        changed (made, removed or moved)."""
        above = paths_of(self.names, parent)
        if above is None:
            return None
        paths = [_join(path, name) for path in above]
        return paths + [path + b"/" for path in paths] if whole else paths

    def _note(self, paths: list[bytes] | None) -> None:
        if paths is None:
            self.journal.lost()
        else:
            self.journal.record(*paths)

    # --- names -------------------------------------------------------------------------------
    def mknod(
        self, ctx: Context, parent: int, name: bytes, mode: int, rdev: int, umask: int
    ) -> Entry:
        paths = self._at(parent, name)
        try:
            return self.inner.mknod(ctx, parent, name, mode, rdev, umask)
        finally:
            self._note(paths)

    def mkdir(self, ctx: Context, parent: int, name: bytes, mode: int, umask: int) -> Entry:
        paths = self._at(parent, name, whole=True)
        try:
            return self.inner.mkdir(ctx, parent, name, mode, umask)
        finally:
            self._note(paths)

    def symlink(self, ctx: Context, parent: int, name: bytes, target: bytes) -> Entry:
        paths = self._at(parent, name)
        try:
            return self.inner.symlink(ctx, parent, name, target)
        finally:
            self._note(paths)

    def link(self, ctx: Context, ino: int, new_parent: int, new_name: bytes) -> Entry:
        source = paths_of(self.names, ino)  # its link count and ctime change
        paths = self._at(new_parent, new_name)
        try:
            return self.inner.link(ctx, ino, new_parent, new_name)
        finally:
            self._note(None if source is None or paths is None else source + paths)

    def create(
        self, ctx: Context, parent: int, name: bytes, mode: int, umask: int, flags: int
    ) -> tuple[Entry, Opened]:
        paths = self._at(parent, name)
        try:
            return self.inner.create(ctx, parent, name, mode, umask, flags)
        finally:
            self._note(paths)

    def unlink(self, ctx: Context, parent: int, name: bytes) -> None:
        paths = self._at(parent, name)
        try:
            self.inner.unlink(ctx, parent, name)
        finally:
            self._note(paths)

    def rmdir(self, ctx: Context, parent: int, name: bytes) -> None:
        paths = self._at(parent, name, whole=True)
        try:
            self.inner.rmdir(ctx, parent, name)
        finally:
            self._note(paths)

    def rename(
        self, ctx: Context, parent: int, name: bytes, new_parent: int, new_name: bytes, flags: int
    ) -> None:
        # Either may be a folder (moved as a whole): both forms of both names.
        old = self._at(parent, name, whole=True)
        new = self._at(new_parent, new_name, whole=True)
        try:
            self.inner.rename(ctx, parent, name, new_parent, new_name, flags)
        finally:
            self._note(None if old is None or new is None else old + new)

    # --- a node's attributes and contents ----------------------------------------------------
    def setattr(self, ctx: Context, ino: int, changes: SetAttr, fh: int | None) -> AttrReply:
        paths = paths_of(self.names, ino)
        try:
            return self.inner.setattr(ctx, ino, changes, fh)
        finally:
            self._note(paths)

    def write(self, ctx: Context, ino: int, fh: int, offset: int, data: bytes, flags: int) -> int:
        paths = paths_of(self.names, ino)
        try:
            return self.inner.write(ctx, ino, fh, offset, data, flags)
        finally:
            self._note(paths)

    def fallocate(
        self, ctx: Context, ino: int, fh: int, offset: int, length: int, mode: int
    ) -> None:
        paths = paths_of(self.names, ino)
        try:
            self.inner.fallocate(ctx, ino, fh, offset, length, mode)
        finally:
            self._note(paths)

    def copy_file_range(
        self,
        ctx: Context,
        ino_in: int,
        fh_in: int,
        off_in: int,
        ino_out: int,
        fh_out: int,
        off_out: int,
        length: int,
        flags: int,
    ) -> int:
        paths = paths_of(self.names, ino_out)
        try:
            return self.inner.copy_file_range(
                ctx, ino_in, fh_in, off_in, ino_out, fh_out, off_out, length, flags
            )
        finally:
            self._note(paths)
