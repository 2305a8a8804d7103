"""What happened to a path in a share: the kinds of change the server streams and the client
follows.  The values are the contract's ``Change.Kind`` numbers (a test holds them equal), so
the two edges that meet a message convert with ``int()`` and ``ChangeKind()``; everything
between them uses this type."""

from __future__ import annotations

import enum


class ChangeKind(enum.IntEnum):
    WATCHING = 0  # the watch is in place: every change after this one is reported
    CREATED = 1
    DELETED = 2
    MODIFIED = 3  # content
    ATTRIB = 4  # mode, owner, times, xattrs
    MOVED = 5  # path -> dest, both inside the share
    OVERFLOW = 6  # changes were lost: everything cached may be stale
