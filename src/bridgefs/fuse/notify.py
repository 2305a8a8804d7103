"""Notifications: messages the filesystem sends to the kernel unasked (unique = 0).

Never write one from a thread that is answering a request about the same node: the kernel may wait
for that request while holding the locks the notification needs.
"""

from __future__ import annotations

from . import abi


def _frame(code: abi.Notify, body: bytes) -> list[bytes]:
    return [abi.OUT_HEADER.pack(abi.OUT_HEADER.size + len(body), int(code), 0), body]


def inval_inode(ino: int, offset: int = 0, length: int = 0) -> list[bytes]:
    """Drop the attributes of ``ino`` and its cached pages in [offset, offset+length) (length 0:
    to the end; a negative offset drops only the attributes)."""
    return _frame(abi.Notify.INVAL_INODE, abi.NOTIFY_INVAL_INODE.pack(ino, offset, length))


def inval_entry(parent: int, name: bytes, expire_only: bool = False) -> list[bytes]:
    """Drop the cached entry ``name`` in ``parent`` (and the parent's cached listing)."""
    flags = abi.EXPIRE_ONLY if expire_only else 0
    return _frame(
        abi.Notify.INVAL_ENTRY, abi.NOTIFY_INVAL_ENTRY.pack(parent, len(name), flags) + name + b"\0"
    )


def delete(parent: int, child: int, name: bytes) -> list[bytes]:
    """Tell the kernel that ``name`` (node ``child``) was removed from ``parent``."""
    return _frame(
        abi.Notify.DELETE, abi.NOTIFY_DELETE.pack(parent, child, len(name), 0) + name + b"\0"
    )


def store(ino: int, offset: int, data: bytes) -> list[bytes]:
    """Put ``data`` into the page cache of ``ino`` at ``offset``."""
    return _frame(abi.Notify.STORE, abi.NOTIFY_STORE.pack(ino, offset, len(data), 0) + data)


def parse(frame: bytes) -> tuple[int, bytes]:
    """(notify code, body) of a notification frame: for tests."""
    length, code, unique = abi.OUT_HEADER.unpack_from(frame)
    assert unique == 0
    return code, bytes(frame[abi.OUT_HEADER.size : length])
