"""An in-memory filesystem: the reference that the tests mount through FUSE.

It answers every call the way a native Linux filesystem (ext4, tmpfs) does, errno for errno, so the
same test script can run against it and against a native directory.  Permission checks are left to
the kernel (the mount uses default_permissions), as are the checks the VFS makes before a request
ever reaches a filesystem; the duplicates kept here make direct calls behave like system calls.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from .fuse.filesystem import (
    ROOT_ID,
    TIME_NOW,
    Attr,
    AttrReply,
    Context,
    DirEntry,
    Entry,
    FileSystem,
    FsError,
    Opened,
    SetAttr,
    StatFs,
)

NAME_MAX = 255
BLOCK_SIZE = 4096
DIR_SIZE = 4096  # what ext4 reports for a directory that fits in one block

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
XATTR_CREATE = 1
XATTR_REPLACE = 2
SEEK_DATA = 3
SEEK_HOLE = 4

# readdir cookies: "." and ".." come first, names get per-directory serial numbers from 3 on.
DOT_COOKIE = 1
DOTDOT_COOKIE = 2
FIRST_NAME_COOKIE = 3

DAY_NS = 86_400 * 10**9
COPY_PIECE = 1 << 20
# statfs: a nominal amount of free space and free inodes on top of what is in use.
FREE_BLOCKS = 1 << 24
FREE_FILES = 1 << 20


def _check_name(name: bytes) -> None:
    if len(name) > NAME_MAX:
        raise FsError(errno.ENAMETOOLONG)


class Content:
    """A regular file's bytes in fixed-size chunks, so that holes cost no memory: tests write at
    offsets beyond 4 GiB to exercise 64-bit offsets.  Missing chunks and the bytes past the end of a
    short chunk read as zeros; no chunk holds bytes at or beyond ``size``."""

    CHUNK = 1 << 16

    def __init__(self) -> None:
        self.size = 0
        self._chunks: dict[int, bytearray] = {}

    def stored(self) -> int:
        return sum(len(chunk) for chunk in self._chunks.values())

    def read(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        out = bytearray(end - offset)
        for index in range(offset // self.CHUNK, (end - 1) // self.CHUNK + 1):
            chunk = self._chunks.get(index)
            if chunk:
                base = index * self.CHUNK
                lo, hi = max(offset, base), min(end, base + len(chunk))
                if lo < hi:
                    out[lo - offset : hi - offset] = chunk[lo - base : hi - base]
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        done = 0
        while done < len(view):
            index, within = divmod(offset + done, self.CHUNK)
            n = min(self.CHUNK - within, len(view) - done)
            chunk = self._chunks.setdefault(index, bytearray())
            if len(chunk) < within:
                chunk.extend(bytes(within - len(chunk)))
            chunk[within : within + n] = view[done : done + n]
            done += n
        self.size = max(self.size, offset + len(view))

    def zero(self, start: int, end: int) -> None:
        """Zero [start, end) within the current size."""
        end = min(end, self.size)
        for index, chunk in list(self._chunks.items()):
            base = index * self.CHUNK
            lo, hi = max(start, base), min(end, base + len(chunk))
            if lo >= hi:
                continue
            if lo == base and hi == base + len(chunk):
                del self._chunks[index]
            else:
                chunk[lo - base : hi - base] = bytes(hi - lo)

    def truncate(self, size: int) -> None:
        # Dropping the bytes past the new end is what makes a later extension read zeros.
        for index, chunk in list(self._chunks.items()):
            base = index * self.CHUNK
            if base >= size:
                del self._chunks[index]
            elif base + len(chunk) > size:
                del chunk[size - base :]
        self.size = size


@dataclass(eq=False, slots=True)
class Node:
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int = 1
    rdev: int = 0
    atime: int = 0
    mtime: int = 0
    ctime: int = 0
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    content: Content | None = None  # regular files
    target: bytes = b""  # symlinks
    # Directories: name -> (ino, cookie).  Dicts keep insertion order and cookies only grow, so
    # iteration order is cookie order; a name whose inode is replaced keeps its slot.
    entries: dict[bytes, tuple[int, int]] | None = None
    next_cookie: int = FIRST_NAME_COOKIE
    parent: int = ROOT_ID  # directories: where ".." points
    known: bool = False  # an Entry went to the kernel and no forget() has come back yet
    opens: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def names(self) -> dict[bytes, tuple[int, int]]:
        """A directory's entries (ENOTDIR for any other node)."""
        if self.entries is None:
            raise FsError(errno.ENOTDIR)
        return self.entries

    @property
    def data(self) -> Content:
        """A regular file's content (EINVAL for any other node)."""
        if self.content is None:
            raise FsError(errno.EINVAL)
        return self.content

    @property
    def size(self) -> int:
        if self.content is not None:
            return self.content.size
        if stat.S_ISLNK(self.mode):
            return len(self.target)
        return DIR_SIZE if self.is_dir else 0

    def attr(self) -> Attr:
        size = self.size
        return Attr(
            ino=self.ino,
            mode=self.mode,
            nlink=self.nlink,
            uid=self.uid,
            gid=self.gid,
            rdev=self.rdev,
            size=size,
            blocks=-(-size // 512),
            atime_ns=self.atime,
            mtime_ns=self.mtime,
            ctime_ns=self.ctime,
            blksize=BLOCK_SIZE,
        )

    def modified(self, now: int) -> None:
        self.mtime = self.ctime = now

    def accessed(self, now: int) -> None:
        # relatime, the Linux mount default (the kernel leaves atime of FUSE inodes to us): move
        # atime only when it would otherwise look older than the last change, or once a day.
        if self.atime <= self.mtime or self.atime <= self.ctime or now - self.atime >= DAY_NS:
            self.atime = now


XATTR_NAMESPACES = (b"user.", b"trusted.", b"security.")


class MemFS(FileSystem):
    def __init__(
        self,
        entry_timeout: float = 1.0,
        attr_timeout: float = 1.0,
        negative_timeout: float = 0.0,
        keep_cache: bool = False,
        cache_dir: bool = False,
    ):
        self.entry_timeout = entry_timeout
        self.attr_timeout = attr_timeout
        self.negative_timeout = negative_timeout
        self.keep_cache = keep_cache
        self.cache_dir = cache_dir
        self._lock = threading.RLock()
        self._next_ino = itertools.count(ROOT_ID + 1)
        self._next_fh = itertools.count(1)
        self._handles: dict[int, Node] = {}
        now = time.time_ns()
        root = Node(
            ROOT_ID,
            stat.S_IFDIR | 0o755,
            os.getuid(),
            os.getgid(),
            nlink=2,
            atime=now,
            mtime=now,
            ctime=now,
            entries={},
            parent=ROOT_ID,
            known=True,
        )
        self._nodes: dict[int, Node] = {ROOT_ID: root}

    def node_count(self) -> int:
        with self._lock:
            return len(self._nodes)

    # --- helpers (call with the lock held) -------------------------------------------------------
    def _node(self, ino: int) -> Node:
        node = self._nodes.get(ino)
        if node is None:
            raise FsError(errno.ENOENT)
        return node

    def _dir(self, ino: int) -> Node:
        node = self._node(ino)
        if not node.is_dir:
            raise FsError(errno.ENOTDIR)
        return node

    def _live_dir(self, ino: int) -> Node:
        """A directory that may gain entries: a removed one may not (the VFS says ENOENT)."""
        node = self._dir(ino)
        if node.nlink == 0:
            raise FsError(errno.ENOENT)
        return node

    def _child(self, parent: Node, name: bytes) -> Node:
        slot = parent.names.get(name)
        if slot is None:
            raise FsError(errno.ENOENT)
        return self._nodes[slot[0]]

    def _entry(self, node: Node) -> Entry:
        node.known = True
        return Entry(node.ino, node.attr(), self.entry_timeout, self.attr_timeout)

    def _insert(self, parent: Node, name: bytes, ino: int, now: int) -> None:
        parent.names[name] = (ino, parent.next_cookie)
        parent.next_cookie += 1
        parent.modified(now)

    def _claim(self, parent: Node, name: bytes) -> None:
        # "." and ".." resolve in lookup(), so to the creating calls they exist as well.
        if name in parent.names or name in (b".", b".."):
            raise FsError(errno.EEXIST)

    def _make(self, ctx: Context, parent: Node, name: bytes, mode: int, **fields) -> Entry:
        self._claim(parent, name)
        now = time.time_ns()
        gid = ctx.gid
        if parent.mode & stat.S_ISGID:  # BSD group semantics, as inode_init_owner() applies them
            gid = parent.gid
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        node = Node(
            next(self._next_ino), mode, ctx.uid, gid, atime=now, mtime=now, ctime=now, **fields
        )
        if node.is_dir:
            node.nlink, node.entries, node.parent = 2, {}, parent.ino
            parent.nlink += 1
        elif stat.S_ISREG(mode):
            node.content = Content()
        self._nodes[node.ino] = node
        self._insert(parent, name, node.ino, now)
        return self._entry(node)

    def _drop_link(self, node: Node, parent: Node, now: int) -> None:
        """One name of ``node`` in ``parent`` went away (the entry itself is already gone)."""
        if node.is_dir:
            node.nlink = 0
            parent.nlink -= 1
        else:
            node.nlink -= 1
        node.ctime = now
        self._maybe_free(node)

    def _maybe_free(self, node: Node) -> None:
        # Unlinked files stay usable while the kernel may still name them or a handle is open.
        if node.nlink == 0 and not node.known and node.opens == 0 and node.ino != ROOT_ID:
            del self._nodes[node.ino]

    def _is_ancestor(self, node: Node, d: Node) -> bool:
        """Whether directory ``node`` is ``d`` or one of its ancestors."""
        while d is not node:
            if d.ino == ROOT_ID:
                return False
            d = self._nodes[d.parent]
        return True

    def _open(self, node: Node, opened: Opened) -> Opened:
        opened.fh = next(self._next_fh)
        self._handles[opened.fh] = node
        node.opens += 1
        return opened

    def _handle(self, fh: int, ino: int) -> Node:
        node = self._handles.get(fh)
        if node is None or node.ino != ino:
            raise FsError(errno.EBADF)
        return node

    def _file(self, fh: int, ino: int) -> Node:
        node = self._handle(fh, ino)
        if node.content is None:
            raise FsError(errno.EISDIR if node.is_dir else errno.EINVAL)
        return node

    def _close(self, fh: int, ino: int) -> None:
        node = self._handle(fh, ino)
        del self._handles[fh]
        node.opens -= 1
        self._maybe_free(node)

    # --- life cycle ------------------------------------------------------------------------------
    def forget(self, ino: int, nlookup: int = 1) -> None:
        with self._lock:
            node = self._nodes.get(ino)
            if node is not None:
                node.known = False
                self._maybe_free(node)

    # --- names -----------------------------------------------------------------------------------
    def lookup(self, ctx: Context, parent: int, name: bytes) -> Entry:
        _check_name(name)
        with self._lock:
            d = self._dir(parent)
            if name == b".":
                return self._entry(d)
            if name == b"..":
                return self._entry(self._node(d.parent))
            slot = d.names.get(name)
            if slot is not None:
                return self._entry(self._nodes[slot[0]])
        if self.negative_timeout > 0:
            return Entry(ino=0, attr=None, entry_timeout=self.negative_timeout)
        raise FsError(errno.ENOENT)

    def mknod(
        self, ctx: Context, parent: int, name: bytes, mode: int, rdev: int, umask: int
    ) -> Entry:
        _check_name(name)
        kind = stat.S_IFMT(mode) or stat.S_IFREG
        if kind == stat.S_IFDIR:
            raise FsError(errno.EPERM)
        if kind not in (stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK):
            raise FsError(errno.EINVAL)
        # Only device nodes carry a device number (init_special_inode() ignores it otherwise).
        rdev = rdev if kind in (stat.S_IFCHR, stat.S_IFBLK) else 0
        with self._lock:
            return self._make(
                ctx, self._live_dir(parent), name, kind | stat.S_IMODE(mode), rdev=rdev
            )

    def mkdir(self, ctx: Context, parent: int, name: bytes, mode: int, umask: int) -> Entry:
        _check_name(name)
        with self._lock:
            return self._make(ctx, self._live_dir(parent), name, stat.S_IFDIR | stat.S_IMODE(mode))

    def symlink(self, ctx: Context, parent: int, name: bytes, target: bytes) -> Entry:
        _check_name(name)
        with self._lock:
            return self._make(
                ctx, self._live_dir(parent), name, stat.S_IFLNK | 0o777, target=bytes(target)
            )

    def link(self, ctx: Context, ino: int, new_parent: int, new_name: bytes) -> Entry:
        _check_name(new_name)
        with self._lock:
            node = self._node(ino)
            d = self._live_dir(new_parent)
            self._claim(d, new_name)
            if node.is_dir:
                raise FsError(errno.EPERM)
            if node.nlink == 0:  # vfs_link() refuses to resurrect an unlinked file
                raise FsError(errno.ENOENT)
            now = time.time_ns()
            self._insert(d, new_name, node.ino, now)
            node.nlink += 1
            node.ctime = now
            return self._entry(node)

    def unlink(self, ctx: Context, parent: int, name: bytes) -> None:
        _check_name(name)
        with self._lock:
            d = self._dir(parent)
            node = self._child(d, name)
            if node.is_dir:
                raise FsError(errno.EISDIR)
            now = time.time_ns()
            del d.names[name]
            d.modified(now)
            self._drop_link(node, d, now)

    def rmdir(self, ctx: Context, parent: int, name: bytes) -> None:
        _check_name(name)
        with self._lock:
            d = self._dir(parent)
            node = self._child(d, name)
            if not node.is_dir:
                raise FsError(errno.ENOTDIR)
            if node.entries:
                raise FsError(errno.ENOTEMPTY)
            now = time.time_ns()
            del d.names[name]
            d.modified(now)
            self._drop_link(node, d, now)

    def rename(
        self, ctx: Context, parent: int, name: bytes, new_parent: int, new_name: bytes, flags: int
    ) -> None:
        # The checks come in the order do_renameat2() and vfs_rename() make them.
        both = RENAME_NOREPLACE | RENAME_EXCHANGE
        if flags & ~both or flags == both:
            raise FsError(errno.EINVAL)
        _check_name(name)
        _check_name(new_name)
        exchange = bool(flags & RENAME_EXCHANGE)
        with self._lock:
            old_dir = self._dir(parent)
            new_dir = self._live_dir(new_parent)
            src = self._child(old_dir, name)
            slot = new_dir.names.get(new_name)
            dst = self._nodes[slot[0]] if slot else None
            if dst is not None and flags & RENAME_NOREPLACE:
                raise FsError(errno.EEXIST)
            if dst is None and exchange:
                raise FsError(errno.ENOENT)
            if src.is_dir and self._is_ancestor(src, new_dir):
                raise FsError(errno.EINVAL)
            if dst is not None and dst.is_dir and self._is_ancestor(dst, old_dir):
                raise FsError(errno.EINVAL if exchange else errno.ENOTEMPTY)
            if dst is src:
                return  # two names of one inode (or one name twice): POSIX says do nothing
            if dst is not None and not exchange:
                if src.is_dir and not dst.is_dir:
                    raise FsError(errno.ENOTDIR)
                if dst.is_dir and not src.is_dir:
                    raise FsError(errno.EISDIR)
                if dst.is_dir and dst.entries:
                    raise FsError(errno.ENOTEMPTY)

            now = time.time_ns()
            src_cookie = old_dir.names[name][1]
            if exchange and dst is not None and slot is not None:
                # Both names keep their readdir positions; only the inodes behind them swap.
                old_dir.names[name] = (dst.ino, src_cookie)
                new_dir.names[new_name] = (src.ino, slot[1])
                self._reparent(dst, new_dir, old_dir)
                dst.ctime = now
            else:
                del old_dir.names[name]
                if dst is None or slot is None:
                    self._insert(new_dir, new_name, src.ino, now)
                else:
                    new_dir.names[new_name] = (src.ino, slot[1])
                    self._drop_link(dst, new_dir, now)
            self._reparent(src, old_dir, new_dir)
            src.ctime = now
            old_dir.modified(now)
            new_dir.modified(now)

    def _reparent(self, node: Node, old_dir: Node, new_dir: Node) -> None:
        # A directory's ".." is a link to its parent.
        if node.is_dir and old_dir is not new_dir:
            old_dir.nlink -= 1
            new_dir.nlink += 1
            node.parent = new_dir.ino

    # --- attributes ------------------------------------------------------------------------------
    def getattr(self, ctx: Context, ino: int, fh: int | None) -> AttrReply:
        with self._lock:
            return AttrReply(self._node(ino).attr(), self.attr_timeout)

    def setattr(self, ctx: Context, ino: int, changes: SetAttr, fh: int | None) -> AttrReply:
        with self._lock:
            node = self._node(ino)
            now = time.time_ns()
            if changes.size is not None:  # validated first so a failed call changes nothing
                if node.is_dir:
                    raise FsError(errno.EISDIR)
                if node.content is None or changes.size < 0:
                    raise FsError(errno.EINVAL)
                node.content.truncate(changes.size)
                node.mtime = now
            if changes.mode is not None:
                node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(changes.mode)
            if changes.uid is not None:
                node.uid = changes.uid
            if changes.gid is not None:
                node.gid = changes.gid
            if changes.kill_suidgid:
                # S_ISGID without group-exec marks mandatory locking, not set-group-id: it stays.
                node.mode &= ~stat.S_ISUID
                if node.mode & stat.S_IXGRP:
                    node.mode &= ~stat.S_ISGID
            if changes.atime_ns is not None:
                node.atime = now if changes.atime_ns == TIME_NOW else changes.atime_ns
            if changes.mtime_ns is not None:
                node.mtime = now if changes.mtime_ns == TIME_NOW else changes.mtime_ns
            node.ctime = now if changes.ctime_ns is None else changes.ctime_ns
            return AttrReply(node.attr(), self.attr_timeout)

    def readlink(self, ctx: Context, ino: int) -> bytes:
        with self._lock:
            node = self._node(ino)
            if not stat.S_ISLNK(node.mode):
                raise FsError(errno.EINVAL)
            node.accessed(time.time_ns())
            return node.target

    def access(self, ctx: Context, ino: int, mask: int) -> None:
        with self._lock:
            self._node(ino)
        # default_permissions: the kernel has already checked the mode bits.
        return None

    def statfs(self, ctx: Context, ino: int) -> StatFs:
        with self._lock:
            stored = sum(n.content.stored() for n in self._nodes.values() if n.content is not None)
            files = len(self._nodes)
        used = -(-stored // BLOCK_SIZE)
        return StatFs(
            blocks=used + FREE_BLOCKS,
            bfree=FREE_BLOCKS,
            bavail=FREE_BLOCKS,
            files=files + FREE_FILES,
            ffree=FREE_FILES,
            bsize=BLOCK_SIZE,
            namelen=NAME_MAX,
            frsize=BLOCK_SIZE,
        )

    # --- extended attributes ---------------------------------------------------------------------
    def setxattr(self, ctx: Context, ino: int, name: bytes, value: bytes, flags: int) -> None:
        if flags & ~(XATTR_CREATE | XATTR_REPLACE):
            raise FsError(errno.EINVAL)
        if not name.startswith(XATTR_NAMESPACES):
            raise FsError(errno.EOPNOTSUPP)  # as Linux filesystems answer an unknown namespace
        with self._lock:
            node = self._node(ino)
            if flags & XATTR_CREATE and name in node.xattrs:
                raise FsError(errno.EEXIST)
            if flags & XATTR_REPLACE and name not in node.xattrs:
                raise FsError(errno.ENODATA)
            node.xattrs[bytes(name)] = bytes(value)
            node.ctime = time.time_ns()

    def getxattr(self, ctx: Context, ino: int, name: bytes) -> bytes:
        with self._lock:
            value = self._node(ino).xattrs.get(name)
        if value is None:
            raise FsError(errno.ENODATA)
        return value

    def listxattr(self, ctx: Context, ino: int) -> list[bytes]:
        with self._lock:
            return list(self._node(ino).xattrs)

    def removexattr(self, ctx: Context, ino: int, name: bytes) -> None:
        with self._lock:
            node = self._node(ino)
            if node.xattrs.pop(name, None) is None:
                raise FsError(errno.ENODATA)
            node.ctime = time.time_ns()

    # --- files -----------------------------------------------------------------------------------
    def _opened_file(self, node: Node, flags: int) -> Opened:
        # O_TRUNC only arrives here when atomic_o_trunc was negotiated; then truncating is our job.
        if flags & os.O_TRUNC and node.content is not None:
            node.content.truncate(0)
            node.modified(time.time_ns())
        return self._open(node, Opened(keep_cache=self.keep_cache))

    def open(self, ctx: Context, ino: int, flags: int) -> Opened:
        with self._lock:
            node = self._node(ino)
            if node.is_dir:
                raise FsError(errno.EISDIR)
            return self._opened_file(node, flags)

    def create(
        self, ctx: Context, parent: int, name: bytes, mode: int, umask: int, flags: int
    ) -> tuple[Entry, Opened]:
        _check_name(name)
        with self._lock:
            d = self._live_dir(parent)
            slot = d.names.get(name)
            if slot is None:
                entry = self._make(ctx, d, name, stat.S_IFREG | stat.S_IMODE(mode))
                return entry, self._open(self._nodes[entry.ino], Opened(keep_cache=self.keep_cache))
            # The kernel's negative dentry was stale: behave like open(O_CREAT) on an existing name.
            node = self._nodes[slot[0]]
            if flags & os.O_EXCL:
                raise FsError(errno.EEXIST)
            if node.is_dir:
                raise FsError(errno.EISDIR)
            if node.content is None:
                raise FsError(errno.EEXIST)
            return self._entry(node), self._opened_file(node, flags)

    def read(self, ctx: Context, ino: int, fh: int, offset: int, size: int) -> bytes:
        with self._lock:
            node = self._file(fh, ino)
            if offset < 0:
                raise FsError(errno.EINVAL)
            if size > 0:
                node.accessed(time.time_ns())
            return node.data.read(offset, size)

    def write(self, ctx: Context, ino: int, fh: int, offset: int, data: bytes, flags: int) -> int:
        with self._lock:
            node = self._file(fh, ino)
            if offset < 0:
                raise FsError(errno.EINVAL)
            if data:  # a zero-length write changes nothing, timestamps included
                node.data.write(offset, data)
                node.modified(time.time_ns())
            return len(data)

    def flush(self, ctx: Context, ino: int, fh: int, lock_owner: int) -> None:
        with self._lock:
            self._handle(fh, ino)

    def release(self, ctx: Context, ino: int, fh: int, flags: int) -> None:
        with self._lock:
            self._close(fh, ino)

    def fsync(self, ctx: Context, ino: int, fh: int, datasync: bool) -> None:
        with self._lock:
            self._handle(fh, ino)

    def fallocate(
        self, ctx: Context, ino: int, fh: int, offset: int, length: int, mode: int
    ) -> None:
        with self._lock:
            node = self._file(fh, ino)
            if offset < 0 or length <= 0:
                raise FsError(errno.EINVAL)
            end = offset + length
            keep_size = mode & FALLOC_FL_KEEP_SIZE
            kind = mode & ~FALLOC_FL_KEEP_SIZE
            if kind == FALLOC_FL_PUNCH_HOLE and keep_size or kind == FALLOC_FL_ZERO_RANGE:
                node.data.zero(offset, end)
            elif kind != 0:  # includes a punch without KEEP_SIZE, which vfs_fallocate() refuses
                raise FsError(errno.EOPNOTSUPP)
            if not keep_size and end > node.data.size:
                node.data.truncate(end)  # grows: the new range reads as zeros
            node.modified(time.time_ns())

    def lseek(self, ctx: Context, ino: int, fh: int, offset: int, whence: int) -> int:
        with self._lock:
            size = self._file(fh, ino).data.size
        if whence not in (SEEK_DATA, SEEK_HOLE):
            raise FsError(errno.EINVAL)
        # No real holes are tracked: all of the file is data and the one hole is at EOF.
        if offset < 0 or offset >= size:
            raise FsError(errno.ENXIO)
        return offset if whence == SEEK_DATA else size

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
        if flags:
            raise FsError(errno.EINVAL)
        with self._lock:
            src = self._file(fh_in, ino_in)
            dst = self._file(fh_out, ino_out)
            if off_in < 0 or off_out < 0 or length < 0:
                raise FsError(errno.EINVAL)
            count = max(0, min(length, src.data.size - off_in))
            if src is dst and off_in < off_out + count and off_out < off_in + count:
                raise FsError(errno.EINVAL)  # as generic_copy_file_checks() does for overlaps
            for done in range(0, count, COPY_PIECE):
                piece = src.data.read(off_in + done, min(COPY_PIECE, count - done))
                dst.data.write(off_out + done, piece)
            if count:
                now = time.time_ns()
                src.accessed(now)
                dst.modified(now)
            return count

    # --- directories -----------------------------------------------------------------------------
    def opendir(self, ctx: Context, ino: int, flags: int) -> Opened:
        with self._lock:
            # The kernel drops a cached listing at an opendir answered without KEEP_CACHE.
            opened = Opened(cache_dir=self.cache_dir, keep_cache=self.cache_dir)
            return self._open(self._dir(ino), opened)

    def readdir(
        self, ctx: Context, ino: int, fh: int, offset: int, plus: bool
    ) -> Iterator[DirEntry]:
        with self._lock:
            d = self._handle(fh, ino)
            if not d.is_dir:
                raise FsError(errno.ENOTDIR)
            d.accessed(time.time_ns())
            if d.nlink == 0:
                return iter(())  # a removed directory lists nothing, not even "." and ".."
            records = [(b".", d.ino, DOT_COOKIE), (b"..", d.parent, DOTDOT_COOKIE)]
            records += [(name, child, cookie) for name, (child, cookie) in d.names.items()]
            snapshot = [
                (name, child, stat.S_IFMT(self._nodes[child].mode) >> 12, cookie)
                for name, child, cookie in records
                if cookie > offset
            ]
        return self._records(snapshot, plus)

    def _records(
        self, snapshot: list[tuple[bytes, int, int, int]], plus: bool
    ) -> Iterator[DirEntry]:
        # The lock is not held across a yield: the session may pause or drop this iterator.
        for name, ino, dtype, cookie in snapshot:
            entry = None
            if plus and cookie >= FIRST_NAME_COOKIE:
                with self._lock:
                    node = self._nodes.get(ino)
                    if node is None:
                        continue  # freed since the snapshot, so removed meanwhile
                    # Marked as known before the session decides whether it fits: a record it
                    # drops keeps an unlinked node alive (a leak), never frees a referenced one.
                    entry = self._entry(node)
            yield DirEntry(name, ino, dtype, cookie, entry)

    def releasedir(self, ctx: Context, ino: int, fh: int) -> None:
        with self._lock:
            self._close(fh, ino)

    def fsyncdir(self, ctx: Context, ino: int, fh: int, datasync: bool) -> None:
        with self._lock:
            self._handle(fh, ino)
