"""The edge between the contract's generated messages and the client's own types: nothing past
this module (and the RemoteFileSystem calls that use it) handles a protocol message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridgefs.change_kinds import ChangeKind
from bridgefs.client.dirbuf import Record
from bridgefs.fuse.filesystem import Attr, DirEntry, Entry, StatFs


@dataclass(frozen=True, slots=True)
class Owner:
    """``uid``/``gid`` to present every file as owned by (None: the server's answer)."""

    uid: int | None = None
    gid: int | None = None


def attr_of(a: Any, owner: Owner) -> Attr:
    return Attr(
        ino=a.ino,
        mode=a.mode,
        nlink=a.nlink,
        uid=a.uid if owner.uid is None else owner.uid,
        gid=a.gid if owner.gid is None else owner.gid,
        rdev=a.rdev,
        size=a.size,
        blocks=a.blocks,
        atime_ns=a.atime_ns,
        mtime_ns=a.mtime_ns,
        ctime_ns=a.ctime_ns,
        blksize=a.blksize or 4096,
    )


def records_of(
    entries: Any,
    plus: bool,
    cookie: int,
    node: Callable[[int], int],
    owner: Owner,
    entry_timeout: float,
    attr_timeout: float,
) -> list[Record]:
    """A listing's records (cookie: where the first one starts), their entries with node ids
    ``node(handle)``."""
    records = []
    for d in entries:
        entry = None
        handle = 0
        if plus and d.HasField("entry"):
            handle = d.entry.handle
            entry = Entry(node(handle), attr_of(d.entry.attr, owner), entry_timeout, attr_timeout)
        records.append(Record(cookie, DirEntry(d.name, d.ino, d.dtype, d.offset, entry), handle))
        cookie = d.offset
    return records


def statfs_of(r: Any) -> StatFs:
    return StatFs(
        blocks=r.blocks,
        bfree=r.bfree,
        bavail=r.bavail,
        files=r.files,
        ffree=r.ffree,
        bsize=r.bsize,
        namelen=r.namelen,
        frsize=r.frsize,
    )


@dataclass(frozen=True, slots=True)
class HostChange:
    """One change the server saw on the host; paths are name lists from the share's root."""

    kind: ChangeKind
    path: tuple[bytes, ...] = ()
    dest: tuple[bytes, ...] = ()  # MOVED: the new path
    is_dir: bool = False
    errno: int = 0  # the server ended the stream with this error


def change_of(c: Any) -> HostChange:
    return HostChange(ChangeKind(c.kind), tuple(c.path), tuple(c.dest), c.is_dir, c.errno)
