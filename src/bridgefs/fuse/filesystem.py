"""The interface a filesystem implements to be mounted: one method per kernel operation.

Every method takes the request context first and inode numbers (FUSE node ids) rather than paths.
Names are bytes: a single path component, as the kernel sent it.  A method reports failure by
raising ``FsError(errno)`` or any ``OSError`` carrying an errno; every other exception is answered
with EIO and logged once, and the daemon keeps serving.  Methods that are not overridden answer
ENOSYS, which the kernel remembers for most operations (it stops asking).

Lookup counts are kept by the session, not by the filesystem: every ``Entry`` with a non-zero
``ino`` that reaches the kernel (lookup, mknod, mkdir, symlink, link, create, readdirplus) counts
once, and ``forget(ino, nlookup)`` is called when the kernel has forgotten every one of them, with
the number it had been handed (an entry for the same node still on its way to the kernel is not
among them).
A filesystem must keep an inode alive (even unlinked) until then.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

ROOT_ID = 1

# Marks a SETATTR time as "now" (utimensat with UTIME_NOW); None in a time field means "leave it".
TIME_NOW = -1


class FsError(OSError):
    """An errno answer to the kernel: ``raise FsError(errno.ENOENT)``."""

    def __init__(self, err: int, message: str | None = None):
        super().__init__(err, message or errno.errorcode.get(err, str(err)))


_EVENT_LOCK = threading.Lock()


@dataclass(slots=True)
class Context:
    """Who made the request, as the kernel saw it; ``pid`` is the calling thread's id."""

    uid: int = 0
    gid: int = 0
    pid: int = 0
    unique: int = 0
    _interrupted: threading.Event | None = None

    @property
    def interrupted(self) -> threading.Event:
        """Set when the kernel interrupts the request.  Made on first use: most requests are
        answered before anyone looks, and an Event costs as much as the rest of the Context."""
        event = self._interrupted
        if event is None:
            with _EVENT_LOCK:  # the worker and the one delivering INTERRUPT may both ask
                if self._interrupted is None:
                    self._interrupted = threading.Event()
                event = self._interrupted
        return event


@dataclass(slots=True)
class Attr:
    ino: int
    mode: int
    nlink: int = 1
    uid: int = 0
    gid: int = 0
    rdev: int = 0
    size: int = 0
    blocks: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    blksize: int = 4096

    @classmethod
    def from_stat(cls, st: os.stat_result) -> Attr:
        return cls(
            ino=st.st_ino,
            mode=st.st_mode,
            nlink=st.st_nlink,
            uid=st.st_uid,
            gid=st.st_gid,
            rdev=st.st_rdev,
            size=st.st_size,
            blocks=st.st_blocks,
            atime_ns=st.st_atime_ns,
            mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns,
            blksize=st.st_blksize,
        )

    @property
    def dtype(self) -> int:
        return stat.S_IFMT(self.mode) >> 12


@dataclass(slots=True)
class Entry:
    """A name resolved to a node.  ``ino == 0`` is a negative entry: the kernel caches the absence
    of the name for ``entry_timeout`` seconds."""

    ino: int
    attr: Attr | None
    entry_timeout: float = 1.0
    attr_timeout: float = 1.0
    generation: int = 0


@dataclass(slots=True)
class AttrReply:
    attr: Attr
    timeout: float = 1.0


@dataclass(slots=True)
class Opened:
    """The answer to open/opendir/create: a handle plus the kernel cache behaviour for this open."""

    fh: int = 0
    # FOPEN_KEEP_CACHE: do not drop the page cache on this open (for a directory: the cached
    # listing, so a directory cached across opens needs both flags)
    keep_cache: bool = False
    cache_dir: bool = False  # FOPEN_CACHE_DIR: the kernel may cache the listing
    direct_io: bool = False  # FOPEN_DIRECT_IO: bypass the page cache
    nonseekable: bool = False  # FOPEN_NONSEEKABLE
    noflush: bool = False  # FOPEN_NOFLUSH: no FLUSH on close


@dataclass(slots=True)
class DirEntry:
    """One listing record.  ``offset`` is the cookie of the *next* record: readdir(offset) resumes
    after this one.  ``entry`` is required in readdirplus answers (``None`` there means: name only,
    no lookup count taken)."""

    name: bytes
    ino: int
    dtype: int
    offset: int
    entry: Entry | None = None


@dataclass(slots=True)
class SetAttr:
    """The fields of a SETATTR that are to change; ``None`` leaves a field as it is."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime_ns: int | None = None  # TIME_NOW for "now"
    mtime_ns: int | None = None  # TIME_NOW for "now"
    ctime_ns: int | None = None
    kill_suidgid: bool = False


@dataclass(slots=True)
class StatFs:
    blocks: int = 0
    bfree: int = 0
    bavail: int = 0
    files: int = 0
    ffree: int = 0
    bsize: int = 4096
    namelen: int = 255
    frsize: int = 4096


@dataclass(slots=True)
class Lock:
    start: int
    end: int
    type: int
    pid: int


def _enosys() -> NoReturn:
    raise FsError(errno.ENOSYS)


# Writes one notification (see notify.py) to the kernel; False when the kernel had nothing
# to drop or the mount is gone.
Notifier = Callable[[list[bytes]], bool]


class FileSystem:
    """Base class: override what the filesystem supports; the rest answers ENOSYS."""

    # False for a filesystem that answers OPEN and OPENDIR with ENOSYS (the kernel's no-open
    # mode): the kernel must then not fold O_TRUNC into the open, and sends it as a SETATTR.
    opens = True
    # True for a filesystem that refuses every change: the mount is then made read-only, so
    # the kernel refuses writes at open (in no-open mode nothing else would).
    read_only = False

    # --- life cycle -------------------------------------------------------------------------
    # The daemon calls attach (before mounting), mounted (INIT answered), then status, stats and
    # changes_since whenever `bridgefs status`/`stats`/`fsmonitor` ask, and destroy at the end.
    def attach(self, notifier: Notifier, mountpoint: str) -> None:
        """Before mounting: how to send the kernel notifications, and where the mount is."""

    def mounted(self) -> None:
        """The kernel's INIT is answered: background work (change streams) may start."""

    def status(self) -> dict[str, Any]:
        """What `bridgefs status` shows beyond the mount itself."""
        return {}

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Counters for `bridgefs stats` (reset to zero after reading when ``reset``)."""
        return {}

    def changes_since(self, token: str, under: bytes) -> tuple[str, list[bytes] | None]:
        """For `bridgefs fsmonitor`: (a token for now, the paths under ``under`` changed since
        ``token``, relative to it, folders changed as a whole with a trailing ``/``).  None for
        the paths: everything may have changed (the default: a filesystem that keeps no
        journal cannot tell)."""
        return "", None

    def init(self) -> None:
        """Called once INIT is negotiated, before any other request."""

    def destroy(self) -> None:
        """Called on DESTROY (unmount) or when the session ends."""

    def forget(self, ino: int, nlookup: int) -> None:
        """The kernel holds no more of the ``nlookup`` references to ``ino`` it was handed."""

    # --- names --------------------------------------------------------------------------------
    def lookup(self, ctx: Context, parent: int, name: bytes) -> Entry:
        _enosys()

    def mknod(
        self, ctx: Context, parent: int, name: bytes, mode: int, rdev: int, umask: int
    ) -> Entry:
        _enosys()

    def mkdir(self, ctx: Context, parent: int, name: bytes, mode: int, umask: int) -> Entry:
        _enosys()

    def symlink(self, ctx: Context, parent: int, name: bytes, target: bytes) -> Entry:
        _enosys()

    def link(self, ctx: Context, ino: int, new_parent: int, new_name: bytes) -> Entry:
        _enosys()

    def unlink(self, ctx: Context, parent: int, name: bytes) -> None:
        _enosys()

    def rmdir(self, ctx: Context, parent: int, name: bytes) -> None:
        _enosys()

    def rename(
        self, ctx: Context, parent: int, name: bytes, new_parent: int, new_name: bytes, flags: int
    ) -> None:
        """``flags``: 0, RENAME_NOREPLACE (1), RENAME_EXCHANGE (2)."""
        _enosys()

    # --- attributes -----------------------------------------------------------------------------
    def getattr(self, ctx: Context, ino: int, fh: int | None) -> AttrReply:
        _enosys()

    def setattr(self, ctx: Context, ino: int, changes: SetAttr, fh: int | None) -> AttrReply:
        _enosys()

    def readlink(self, ctx: Context, ino: int) -> bytes:
        _enosys()

    def access(self, ctx: Context, ino: int, mask: int) -> None:
        _enosys()

    def statfs(self, ctx: Context, ino: int) -> StatFs:
        _enosys()

    # --- extended attributes ------------------------------------------------------------------
    def setxattr(self, ctx: Context, ino: int, name: bytes, value: bytes, flags: int) -> None:
        _enosys()

    def getxattr(self, ctx: Context, ino: int, name: bytes) -> bytes:
        """The whole value; the session answers size queries and ERANGE from it."""
        _enosys()

    def listxattr(self, ctx: Context, ino: int) -> list[bytes]:
        _enosys()

    def removexattr(self, ctx: Context, ino: int, name: bytes) -> None:
        _enosys()

    # --- files ------------------------------------------------------------------------------------
    def open(self, ctx: Context, ino: int, flags: int) -> Opened:
        _enosys()

    def create(
        self, ctx: Context, parent: int, name: bytes, mode: int, umask: int, flags: int
    ) -> tuple[Entry, Opened]:
        _enosys()

    def read(self, ctx: Context, ino: int, fh: int, offset: int, size: int) -> bytes:
        _enosys()

    def write(self, ctx: Context, ino: int, fh: int, offset: int, data: bytes, flags: int) -> int:
        _enosys()

    def flush(self, ctx: Context, ino: int, fh: int, lock_owner: int) -> None:
        _enosys()

    def release(self, ctx: Context, ino: int, fh: int, flags: int) -> None:
        _enosys()

    def fsync(self, ctx: Context, ino: int, fh: int, datasync: bool) -> None:
        _enosys()

    def fallocate(
        self, ctx: Context, ino: int, fh: int, offset: int, length: int, mode: int
    ) -> None:
        _enosys()

    def lseek(self, ctx: Context, ino: int, fh: int, offset: int, whence: int) -> int:
        _enosys()

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
        _enosys()

    def getlk(self, ctx: Context, ino: int, fh: int, owner: int, lock: Lock) -> Lock:
        _enosys()

    def setlk(
        self, ctx: Context, ino: int, fh: int, owner: int, lock: Lock, sleep: bool, flock: bool
    ) -> None:
        _enosys()

    def bmap(self, ctx: Context, ino: int, block: int, blocksize: int) -> int:
        _enosys()

    def ioctl(
        self, ctx: Context, ino: int, fh: int, cmd: int, arg: int, data: bytes, out_size: int
    ) -> tuple[int, bytes]:
        _enosys()

    def poll(self, ctx: Context, ino: int, fh: int, events: int) -> int:
        _enosys()

    # --- directories ----------------------------------------------------------------------------
    def opendir(self, ctx: Context, ino: int, flags: int) -> Opened:
        _enosys()

    def readdir(
        self, ctx: Context, ino: int, fh: int, offset: int, plus: bool
    ) -> Iterable[DirEntry]:
        """Records after cookie ``offset`` (0: from the start).  The session stops consuming the
        iterable when the kernel's buffer is full; with ``plus`` each record carries its Entry."""
        _enosys()

    def releasedir(self, ctx: Context, ino: int, fh: int) -> None:
        _enosys()

    def fsyncdir(self, ctx: Context, ino: int, fh: int, datasync: bool) -> None:
        _enosys()

    def syncfs(self, ctx: Context, ino: int) -> None:
        _enosys()
