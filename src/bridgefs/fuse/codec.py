"""Request frames in, request dataclasses out, by the opcode table.

``decode(frame)`` never raises: a frame it cannot read becomes a ``Malformed`` carrying the errno to
answer with, or ``unique=None`` when the header itself is unreadable (nothing can be answered then).
An opcode the table does not know is no fault of the frame: it decodes to ``Unknown``, which the
dispatcher answers ENOSYS, as the kernel expects of a server older than itself.
"""

from __future__ import annotations

import errno
import struct

from .abi import IN_HEADER
from .opcodes import OPERATIONS
from .requests import Header, Malformed, Request, Unknown
from .wire import BadFrame


def decode(frame: bytes | bytearray | memoryview) -> Request | Malformed:
    """One request frame (as read from /dev/fuse) -> a Request, or a Malformed to answer/drop."""
    view = memoryview(frame)
    if len(view) < IN_HEADER.size:
        return Malformed(None, errno.EIO, f"frame of {len(view)} bytes has no header")
    length, opcode, unique, nodeid, uid, gid, pid, extlen, _ = IN_HEADER.unpack_from(view)
    if length != len(view):
        return Malformed(
            unique, errno.EIO, f"header says {length} bytes, frame has {len(view)}", opcode
        )
    end = length - extlen * 8
    if end < IN_HEADER.size:
        return Malformed(unique, errno.EIO, "extensions longer than the frame", opcode)
    header = Header(opcode, unique, nodeid, uid, gid, pid)
    row = OPERATIONS.get(opcode)
    if row is None:
        return Unknown(header)
    try:
        return row.layout.unpack(header, view[IN_HEADER.size : end])
    except BadFrame as bad:
        return Malformed(unique, bad.errno, bad.reason, opcode)
    except (struct.error, ValueError, TypeError) as exc:  # a layout bug must not kill the loop
        return Malformed(unique, errno.EIO, f"undecodable: {exc}", opcode)


def encode_request(req: Request) -> bytes:
    """The inverse of decode, for tests and tools: builds the frame the kernel would send."""
    h = req.header
    row = OPERATIONS[h.opcode]
    if not isinstance(req, row.request):
        raise TypeError(f"{row.name} sends a {row.request.__name__}, not {type(req).__name__}")
    body = row.layout.pack(req)
    return (
        IN_HEADER.pack(
            IN_HEADER.size + len(body), h.opcode, h.unique, h.nodeid, h.uid, h.gid, h.pid, 0, 0
        )
        + body
    )
