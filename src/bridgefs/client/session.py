"""One client's session with a bridgefs server: the channel, the handshake, the token every call
carries, node ids across server restarts, and the references the kernel holds.

Every round trip goes through ``ServerSession.call``: it waits for queued writes first (unless
the call is one a write cannot affect), bounds the call in time, counts it for `bridgefs stats`,
and turns a gRPC failure or an errno reply into ``FsError``.

Node ids are the server's handles (the share root is 1) until the server forgets the session (it
restarted): then ``resume`` handshakes again, and ids of later sessions carry the session's
number ("epoch") above ``EPOCH_SHIFT``, so they never collide with ids the kernel still holds.
An id from an earlier session is bound again, on first use, by looking its name up anew.
Open files (fh) carry the epoch the same way, but are not bound again: the file was open only in
the lost session, and the new one numbers its files from scratch, so an fh of another epoch is
refused here (ESTALE) rather than sent, where its number could name a file opened since.

A call the server answers with ESTALE may mean it lost the session: ``call`` then resumes
(``resume`` pings first), so a mount without a change stream, whose thread would otherwise do
it, attaches again too.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from bridgefs.client.channel import errno_of, open_channel
from bridgefs.client.hold import HoldStream
from bridgefs.client.lookups import LookupCounts
from bridgefs.client.rpcstats import RpcStats, method_name
from bridgefs.client.writes import WriteBehind
from bridgefs.credentials import HOLD_KEY, ClientCredentials, token_metadata
from bridgefs.fuse.filesystem import FsError
from bridgefs.rpc import MAX_IO_SIZE, PROTOCOL_VERSION, ROOT_HANDLE, SESSION_KEY, pb, pb_grpc

log = logging.getLogger("bridgefs.client")

REQUIRED_CAPABILITIES = ("readdirplus", "forget-batch", "node-io")
EPOCH_SHIFT = 40
# Pauses before a call refused with EAGAIN (the server's bound on calls in flight) is sent again:
# doubling from the first to the most.
BUSY_WAIT_FIRST, BUSY_WAIT_MAX = 0.001, 0.05
HANDLE_MASK = (1 << EPOCH_SHIFT) - 1

# Where a node id was last named: (parent node id, name), or None; for rebinding after a restart.
Locate = Callable[[int], "tuple[int, bytes] | None"]


# How long a call waits for a server that holds the connection open without answering (stopped
# or hung; a server that is gone fails calls at once).  Long, because a program waiting on it
# can still be killed (fuse/interrupts.py) and a server stopped for a while should cost no error.
CALL_TIMEOUT = 120.0


class ServerSession:
    """Connects and handshakes on construction (raising FsError on failure).  ``timeout``
    bounds every call that is not given its own."""

    def __init__(
        self,
        address: str,
        share: str,
        writes: WriteBehind,
        *,
        timeout: float = CALL_TIMEOUT,
        connect_timeout: float = 10.0,
        client_name: str | None = None,
        credentials: ClientCredentials | None = None,
    ):
        self.address = address
        self.share = share
        self.timeout = timeout
        self.rpc_stats = RpcStats()
        self.epoch = 0
        # Set by whoever records names (the name table): finds a node again after a restart.
        self.locate: Locate = lambda ino: None
        # Set by the owner of what belonged to a session: dropped when one is resumed.
        self.session_lost: Callable[[], None] = lambda: None
        self._writes = writes
        self._rebound: dict[int, int] = {}
        self._resume_lock = threading.Lock()
        self._closed = False
        self._client_name = client_name or f"{socket.gethostname()} pid {os.getpid()}"
        # BRIDGEFS_TOKEN_FILE and friends when the caller names none: mount --token-file sets it.
        creds = credentials if credentials is not None else ClientCredentials.from_environment()
        self._conn = open_channel(address, creds)
        self.stub = pb_grpc.FilesStub(self._conn.channel)
        self._auth: tuple[tuple[str, str], ...] = (
            (token_metadata(creds.token),) if creds.token else ()
        )
        self._metadata: tuple[tuple[str, str], ...] = self._auth
        try:
            hello = self._handshake(connect_timeout)
        except BaseException:
            self._conn.close()
            raise
        self.id = hello.session
        self._metadata = ((SESSION_KEY, hello.session), *self._auth)
        self._hold = HoldStream(self._open_hold)
        self._hold.start()
        self.capabilities = tuple(hello.capabilities)
        self.read_only = hello.read_only
        self.max_io = min(hello.max_io_size or MAX_IO_SIZE, MAX_IO_SIZE)
        self.max_readdir_entries = hello.max_readdir_entries
        self.max_nodes = hello.max_nodes  # 0: the server did not say
        self.root_attr = hello.root.attr
        self.ownership = hello.ownership or "overlay"
        if self.ownership == "mapped":
            log.warning(
                "share %r: the host filesystem refuses user xattrs, so guest owners and modes "
                "are not kept: files show the host's mode and a fixed owner (see README, "
                "Ownership)",
                share,
            )
        # Calls that need not wait for queued writes: nothing they read or change is something
        # a write changes (the security.capability a host write drops was removed through the
        # mount before the kernel sent that write).
        self._unordered = frozenset(
            (self.stub.Write, self.stub.GetXattr, self.stub.ListXattr, self.stub.Ping)
        )
        self.counts = LookupCounts(
            self._send_forget,
            self._send_ping,
            ping_interval=max(0.05, (hello.idle_timeout or 600.0) / 3),
        )
        self.counts.start()
        self._close_lock = threading.Lock()

    def _handshake(self, connect_timeout: float) -> Any:
        request = pb.HandshakeRequest(
            protocol_version=PROTOCOL_VERSION,
            share=self.share,
            required_capabilities=REQUIRED_CAPABILITIES,
            client_name=self._client_name,
        )
        try:
            reply = self.stub.Handshake(
                request, timeout=connect_timeout, wait_for_ready=True, metadata=self._auth
            )
        except grpc.RpcError as exc:
            if hasattr(exc, "code") and exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise FsError(
                    errno.EACCES,
                    f"permission denied (EACCES): the bridgefs server at {self.address} "
                    f"refused this client: "
                    f"{exc.details()} (is --token-file the server's?)",
                ) from None
            # No answer within connect_timeout means nobody is there (ENOTCONN), not an I/O error.
            err = errno_of(exc)
            raise FsError(
                errno.ENOTCONN if err == errno.EIO else err,
                f"cannot reach bridgefs server at {self.address}: "
                f"{exc.details() if hasattr(exc, 'details') else exc}",
            ) from None
        if reply.errno:
            why = {
                errno.ENOENT: f"no share named {self.share!r}",
                errno.EPROTONOSUPPORT: f"server speaks protocol {reply.protocol_version} with "
                f"{list(reply.capabilities)}, client needs "
                f"{PROTOCOL_VERSION} with {list(REQUIRED_CAPABILITIES)}",
            }
            raise FsError(reply.errno, why.get(reply.errno, os.strerror(reply.errno)))
        return reply

    @property
    def closed(self) -> bool:
        return self._closed

    # --- round trips ----------------------------------------------------------------------------
    def call(self, rpc: Any, request: Any, timeout: float | None = None) -> Any:
        if self._writes.busy and rpc not in self._unordered:
            self._writes.drain()  # whatever this asks or changes comes after the writes answered
        started = time.perf_counter_ns()
        limit = timeout or self.timeout
        deadline = time.monotonic() + limit
        wait = BUSY_WAIT_FIRST
        while True:
            try:
                reply = rpc(request, timeout=limit, metadata=self._metadata)
            except grpc.RpcError as exc:
                self.rpc_stats.record(method_name(rpc), time.perf_counter_ns() - started, True)
                raise FsError(errno_of(exc)) from None
            if reply.errno != errno.EAGAIN or time.monotonic() + wait > deadline:
                break
            # The server's bound on calls in flight for this client: it did nothing, so the
            # call waits for room (as long as the call may take) rather than failing the
            # program that made it.  Jitter keeps waiting callers from coming back together.
            time.sleep(wait * random.uniform(0.5, 1.0))
            wait = min(wait * 2, BUSY_WAIT_MAX)
        self.rpc_stats.record(method_name(rpc), time.perf_counter_ns() - started, bool(reply.errno))
        self.counts.touch()
        if reply.errno:
            if reply.errno == errno.ESTALE and rpc is not self.stub.Ping and not self._closed:
                self.resume(self.session_lost)  # a restarted server: the next call succeeds
            raise FsError(reply.errno)
        return reply

    def _open_hold(self) -> Any:
        """A hold stream for the current session (hold.py): the server ends the session soon
        after it ends, so a client that vanishes without Goodbye frees its session."""
        return self.stub.Watch(
            pb.WatchRequest(), metadata=(*self._metadata, (HOLD_KEY, "1")), wait_for_ready=True
        )

    def watch(self) -> Any:
        """The change stream of this session's share (an iterator of pb.Change, cancellable)."""
        return self.stub.Watch(pb.WatchRequest(), metadata=self._metadata)

    def _send_forget(self, items: list[tuple[int, int]]) -> None:
        request = pb.ForgetRequest(items=[pb.ForgetItem(handle=h, count=n) for h, n in items])
        self.call(self.stub.Forget, request)

    def _send_ping(self) -> None:
        self.call(self.stub.Ping, pb.Empty())

    # --- node ids ---------------------------------------------------------------------------------
    def handle(self, ino: int) -> int:
        """The server handle of node id ``ino``."""
        if ino == ROOT_HANDLE or ino >> EPOCH_SHIFT == self.epoch:
            return ino & HANDLE_MASK
        handle = self._rebound.get(ino)
        if handle is None:
            handle = self._rebind(ino)
        return handle

    def node(self, handle: int) -> int:
        """The node id of server handle ``handle``."""
        return handle if handle == ROOT_HANDLE else (self.epoch << EPOCH_SHIFT) | handle

    def _rebind(self, ino: int) -> int:
        where = self.locate(ino)
        if where is None:
            raise FsError(errno.ESTALE)
        parent, name = where
        reply = self.call(self.stub.Lookup, pb.NameRequest(parent=self.handle(parent), name=name))
        self.counts.received(reply.entry.handle)
        self._rebound[ino] = reply.entry.handle
        return int(reply.entry.handle)

    def forget(self, ino: int, nlookup: int | None) -> None:
        """The kernel forgot ``ino``: give back the references it was handed."""
        if ino >> EPOCH_SHIFT == self.epoch:
            self.counts.forget(ino & HANDLE_MASK, nlookup)
        else:  # a node from before the session was resumed: only its rebinding is held
            handle = self._rebound.pop(ino, None)
            if handle is not None:
                self.counts.give_back(handle)

    def opened(self, fh: int) -> int:
        """The fh the kernel is given for the server's open file ``fh`` (0: none)."""
        return fh and (self.epoch << EPOCH_SHIFT) | fh

    def file(self, fh: int) -> int:
        """The server's open file of kernel fh ``fh`` (0: none); ESTALE if it was opened in a
        session the server lost."""
        if fh and fh >> EPOCH_SHIFT != self.epoch:
            raise FsError(errno.ESTALE)
        return fh & HANDLE_MASK

    def give_back(self, ino: int) -> None:
        """A reference to ``ino`` that was received but never reached the kernel."""
        if ino >> EPOCH_SHIFT == self.epoch:
            self.counts.give_back(ino & HANDLE_MASK)

    def resume(self, on_new_session: Callable[[], None]) -> bool:
        """Open a new session after the server lost ours (it restarted); ``on_new_session``
        then drops what belonged to the old one.  False if the server is not back yet."""
        with self._resume_lock:
            try:
                self.call(self.stub.Ping, pb.Empty(), timeout=min(self.timeout, 5.0))
                return True  # the session is fine
            except FsError as exc:
                if exc.errno != errno.ESTALE:
                    return False
            try:
                hello = self._handshake(min(self.timeout, 5.0))
            except FsError:
                return False
            # The epoch moves before the token, so ids resolved from here on are the new
            # session's.  A request built a moment before and sent with the new token is the
            # server's to refuse: no session's numbers are another's (server/handles.py).
            self.epoch += 1
            self._rebound.clear()
            self.id = hello.session
            self._metadata = ((SESSION_KEY, hello.session), *self._auth)
            self._hold.renew()
            self.counts.reset()
            on_new_session()
            log.warning(
                "the server lost this client's session: attached again (session %d)", self.epoch
            )
            return True

    # --- life cycle -------------------------------------------------------------------------------
    def close(self, before_goodbye: Callable[[], None]) -> None:
        """Say goodbye (the server then releases every handle and file of the session);
        ``before_goodbye`` stops what would otherwise still send."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.counts.close()  # queued forgets are moot: Goodbye releases every handle
            before_goodbye()
            self.call(self.stub.Goodbye, pb.Empty(), timeout=min(self.timeout, 5.0))
        except FsError as exc:
            log.debug("goodbye failed: %s", exc)
        finally:
            self._hold.close()
            self._conn.close()
