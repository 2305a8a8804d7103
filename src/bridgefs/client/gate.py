"""The replay gate: the requests of a replay (replay.py) are answered from its plan and never
reach the server; every other request goes on to the layers behind it.  It also answers for the
nodes and the handle that exist only for replays (a name deleted on the host is replayed as the
deletion of a stand-in node; a replayed open answers REPLAY_FH)."""

from __future__ import annotations

import dataclasses
import errno

from bridgefs.client.layer import Layer
from bridgefs.client.modify import FALLOC_FL_KEEP_SIZE
from bridgefs.client.replay import REPLAY_FH, Replayer, is_fake
from bridgefs.fuse.filesystem import (
    AttrReply,
    Context,
    Entry,
    FileSystem,
    FsError,
    Opened,
    SetAttr,
)


class ReplayGate(Layer):
    def __init__(self, inner: FileSystem, replayer: Replayer):
        super().__init__(inner)
        self.replayer = replayer

    def _replaying(self, ctx: Context) -> bool:
        return self.replayer.owns(ctx)

    # --- names: a replay's are answered as before the change, then as after it --------------------
    def lookup(self, ctx: Context, parent: int, name: bytes) -> Entry:
        if self._replaying(ctx):
            return self.replayer.lookup(
                parent, name, lambda p, n: self.inner.lookup(Context(), p, n)
            )
        return self.inner.lookup(ctx, parent, name)

    def mknod(
        self, ctx: Context, parent: int, name: bytes, mode: int, rdev: int, umask: int
    ) -> Entry:
        if self._replaying(ctx):
            return self.replayer.node()
        return self.inner.mknod(ctx, parent, name, mode, rdev, umask)

    def mkdir(self, ctx: Context, parent: int, name: bytes, mode: int, umask: int) -> Entry:
        if self._replaying(ctx):
            return self.replayer.node()
        return self.inner.mkdir(ctx, parent, name, mode, umask)

    def symlink(self, ctx: Context, parent: int, name: bytes, target: bytes) -> Entry:
        if self._replaying(ctx):
            return self.replayer.node()
        return self.inner.symlink(ctx, parent, name, target)

    def create(
        self, ctx: Context, parent: int, name: bytes, mode: int, umask: int, flags: int
    ) -> tuple[Entry, Opened]:
        if self._replaying(ctx):
            return self.replayer.node(), self.replayer.opened()
        return self.inner.create(ctx, parent, name, mode, umask, flags)

    def unlink(self, ctx: Context, parent: int, name: bytes) -> None:
        if not self._replaying(ctx):
            self.inner.unlink(ctx, parent, name)

    def rmdir(self, ctx: Context, parent: int, name: bytes) -> None:
        if not self._replaying(ctx):
            self.inner.rmdir(ctx, parent, name)

    def rename(
        self, ctx: Context, parent: int, name: bytes, new_parent: int, new_name: bytes, flags: int
    ) -> None:
        if not self._replaying(ctx):
            self.inner.rename(ctx, parent, name, new_parent, new_name, flags)

    def forget(self, ino: int, nlookup: int) -> None:
        if is_fake(ino):
            self.replayer.forget_fake(ino)
        else:
            self.inner.forget(ino, nlookup)

    # --- attributes -------------------------------------------------------------------------------
    def getattr(self, ctx: Context, ino: int, fh: int | None) -> AttrReply:
        if is_fake(ino):
            return AttrReply(self.replayer.fake_attr(ino), 0)
        return self.inner.getattr(ctx, ino, None if fh == REPLAY_FH else fh)

    def setattr(self, ctx: Context, ino: int, changes: SetAttr, fh: int | None) -> AttrReply:
        if is_fake(ino):
            return AttrReply(self.replayer.fake_attr(ino), 0)
        if self._replaying(ctx) or fh == REPLAY_FH:
            if changes.size is not None and not self.replayer.sizes_unchanged():
                raise FsError(errno.ESTALE)  # a host truncate judged by sizes a VM's overtook
            return self._replayed_setattr(ctx, ino, changes)
        return self.inner.setattr(ctx, ino, changes, fh)

    def _replayed_setattr(self, ctx: Context, ino: int, changes: SetAttr) -> AttrReply:
        """The attributes as they are now, but with the size the replay truncated to (the size
        the kernel itself gave it a moment before), valid for no time.  The kernel takes a
        truncate's answer as the file's size and drops its pages past it: with the writeback
        cache the server's size lags the kernel's (dirty pages not written yet), and a size
        the server had before a change still on its way would cut the file the VM sees."""
        attr = self.inner.getattr(ctx, ino, None).attr
        if changes.size is not None:
            attr = dataclasses.replace(attr, size=changes.size)
        return AttrReply(attr, 0)

    def getxattr(self, ctx: Context, ino: int, name: bytes) -> bytes:
        if self._replaying(ctx) or is_fake(ino):
            raise FsError(errno.ENODATA)  # the kernel checking security.capability before a write
        return self.inner.getxattr(ctx, ino, name)

    def fallocate(
        self, ctx: Context, ino: int, fh: int, offset: int, length: int, mode: int
    ) -> None:
        if not self._replaying(ctx):
            self.inner.fallocate(ctx, ino, _real(fh), offset, length, mode)
        elif not mode & FALLOC_FL_KEEP_SIZE and not self.replayer.sizes_unchanged():
            # A replayed modification (modify.py) answered 0 raises the kernel's size to the
            # host size read before a truncate of the VM's own that landed since.
            raise FsError(errno.ESTALE)

    # --- I/O through a replay's open file ---------------------------------------------------------
    # With the writeback cache the kernel writes a file's dirty pages through any of its open
    # files, a replay's too (a host creation replayed while the VM writes the file): the pages
    # are the VM's own and go to the node (fh 0: no open file).
    def write(self, ctx: Context, ino: int, fh: int, offset: int, data: bytes, flags: int) -> int:
        return self.inner.write(ctx, ino, _real(fh), offset, data, flags)

    def read(self, ctx: Context, ino: int, fh: int, offset: int, size: int) -> bytes:
        return self.inner.read(ctx, ino, _real(fh), offset, size)

    def fsync(self, ctx: Context, ino: int, fh: int, datasync: bool) -> None:
        self.inner.fsync(ctx, ino, _real(fh), datasync)

    # --- what a replay opens ----------------------------------------------------------------------
    def open(self, ctx: Context, ino: int, flags: int) -> Opened:
        if self.opens and self._replaying(ctx):
            return self.replayer.opened()
        return self.inner.open(ctx, ino, flags)

    def flush(self, ctx: Context, ino: int, fh: int, lock_owner: int) -> None:
        if fh != REPLAY_FH or not self.opens:
            self.inner.flush(ctx, ino, fh, lock_owner)

    def release(self, ctx: Context, ino: int, fh: int, flags: int) -> None:
        if fh != REPLAY_FH:
            self.inner.release(ctx, ino, fh, flags)


def _real(fh: int) -> int:
    return 0 if fh == REPLAY_FH else fh
