"""Writes on their way to the server: sent and answered one by one, or queued and answered at
once (writes.py orders them and keeps their errors) while files are opened, so that a FLUSH at
close, or the next fsync, reports a write that failed after it was answered.

A write of a session the server lost fails with ESTALE: its file was open only there.  Writes
are kept apart by the kernel's fh (which tells the session, session.py); the server is sent its
own.
"""

from __future__ import annotations

import errno
import functools

from bridgefs.client.session import ServerSession
from bridgefs.client.writes import PendingWrite, WriteBehind
from bridgefs.fuse.filesystem import FsError
from bridgefs.rpc import pb


class NodeWrites:
    def __init__(self, session: ServerSession, queue: WriteBehind):
        self._session = session
        self._queue = queue

    def write(self, ino: int, fh: int, offset: int, data: bytes, flags: int, queued: bool) -> int:
        """Bytes written (``queued``: bytes accepted, errors reported later; see writes.py)."""
        if not isinstance(data, bytes):
            data = bytes(data)  # it may wait in a queue: a buffer the caller reuses would change
        session = self._session
        epoch, handle, max_io = session.epoch, session.handle(ino), session.max_io
        server_fh = session.file(fh)
        if not queued:
            done = 0
            while done < len(data):
                chunk = data[done : done + max_io] if len(data) > max_io else data
                written = self._send(epoch, handle, server_fh, offset + done, chunk, flags)
                done += written
                if written < len(chunk):
                    break
            return done
        for start in range(0, len(data), max_io):
            chunk = data[start : start + max_io] if len(data) > max_io else data
            send = functools.partial(
                self._send, epoch, handle, server_fh, offset + start, chunk, flags
            )
            self._queue.submit(PendingWrite((epoch, handle), fh, offset + start, chunk, send))
        return len(data)

    def _send(self, epoch: int, handle: int, fh: int, offset: int, data: bytes, flags: int) -> int:
        if epoch != self._session.epoch:
            raise FsError(errno.ESTALE)  # an open file of a session the server lost
        request = pb.WriteRequest(handle=handle, fh=fh, offset=offset, data=data, flags=flags)
        return int(self._session.call(self._session.stub.Write, request).written)

    def owed_error(self, ino: int, fh: int, any_file: bool) -> int | None:
        """Once every queued write is answered: the error of one not yet reported to ``fh``
        (``any_file``: through any descriptor of the node, as fsync reports)."""
        self._queue.drain()
        return self._queue.take_error(
            (self._session.epoch, self._session.handle(ino)), fh, any_file
        )

    def close(self) -> None:
        self._queue.close()
