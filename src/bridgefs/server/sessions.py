"""Client sessions: one per Handshake, each with its own handle tables and bounds.

A session ends with Goodbye, when the server stops, ``Limits.hold_grace`` seconds after the
client's hold stream ended (its connection closed: see FilesService.Watch) unless the client opened
it again meanwhile (a connection that broke and came back keeps its session), or when it has made
no call for ``Limits.idle_timeout`` seconds (the client pings while idle), so a client that
vanished does not hold host fds for long.

Each session belongs to a client (its TLS subject, else its transport peer without the port):
sessions and calls in flight are bounded per client as well as per session, so that one client
cannot take every session or every server thread from the others.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import threading
import time

from bridgefs.server.bounds import Account, DescriptorPool
from bridgefs.server.echo import EchoLog
from bridgefs.server.handles import Limits, NodeTable, OpenTable
from bridgefs.server.localfs import LocalFs
from bridgefs.server.shares import Share

log = logging.getLogger("bridgefs.server")


class Session:
    def __init__(
        self,
        token: str,
        share: Share,
        limits: Limits,
        peer: str,
        client_name: str,
        client: ClientLoad | None = None,
        account: Account | None = None,
    ):
        self.token = token
        self.client = client if client is not None else ClientLoad(peer, limits)
        self.share = share
        self.limits = limits
        self.peer = peer
        self.client_name = client_name
        self.account = account
        self.nodes = NodeTable(os.dup(share.root_fd), share.root_key, limits.max_nodes, account)
        self.files = OpenTable(limits.max_open, limits.max_listed, account)
        self.echo = EchoLog()  # this session's own recent changes, kept out of its Watch stream
        self.fs = LocalFs(share, self.nodes, self.files, self.echo)
        self._lock = threading.Lock()
        self._inflight = 0
        self.last_seen = time.monotonic()
        self._holds = 0  # hold streams open now
        self._unheld_since: float | None = None  # when the last one ended (None: one is open)
        self.closed = False
        self.ended = threading.Event()  # set on close: ends the session's hold stream

    @property
    def short(self) -> str:
        return self.token[:8]

    def enter(self) -> None:
        with self._lock:
            if self.closed:
                raise OSError(errno.ESTALE, "session closed")
            if self._inflight >= self.limits.max_inflight:
                raise OSError(errno.EAGAIN, f"{self.limits.max_inflight} calls in flight")
            self.client.enter()
            self._inflight += 1
            self.last_seen = time.monotonic()

    def exit(self) -> None:
        with self._lock:
            self._inflight -= 1
            self.last_seen = time.monotonic()
        self.client.exit()

    def hold_opened(self) -> None:
        with self._lock:
            self._holds += 1
            self._unheld_since = None

    def hold_closed(self, now: float | None = None) -> None:
        with self._lock:
            self._holds -= 1
            if self._holds <= 0:
                self._unheld_since = time.monotonic() if now is None else now

    def unheld_for(self, now: float) -> float:
        """How long no hold stream has been open, after one was (0.0 for a session whose
        client never opened one: only the idle timeout ends it)."""
        with self._lock:
            return 0.0 if self._unheld_since is None else now - self._unheld_since

    def idle_since(self, now: float) -> float:
        with self._lock:
            return 0.0 if self._inflight else now - self.last_seen

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self.ended.set()
        # Pins keep fds of calls still running open until those calls finish.
        self.fs.close()
        self.files.close_all()
        self.nodes.close_all()
        if self.account is not None:
            self.account.close()


class ClientLoad:
    """What one client (all its sessions) has in flight: at most ``max_client_inflight``."""

    def __init__(self, identity: str, limits: Limits):
        self.identity = identity
        self.limit = limits.max_client_inflight
        self.sessions = 0  # guarded by the registry's lock
        self._lock = threading.Lock()
        self._inflight = 0

    def enter(self) -> None:
        with self._lock:
            if self._inflight >= self.limit:
                raise OSError(
                    errno.EAGAIN, f"client {self.identity} has {self.limit} calls in flight"
                )
            self._inflight += 1

    def exit(self) -> None:
        with self._lock:
            self._inflight -= 1


class SessionRegistry:
    def __init__(self, limits: Limits, pool: DescriptorPool | None = None):
        self.limits = limits
        self.pool = pool  # the descriptors sessions share (None: no limit to share)
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._clients: dict[str, ClientLoad] = {}
        self.stopping = threading.Event()  # hold streams end when the server stops

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, share: Share, peer: str, client_name: str, identity: str = "") -> Session:
        """A new session for client ``identity`` (``peer`` when not given)."""
        identity = identity or peer
        with self._lock:
            if len(self._sessions) >= self.limits.max_sessions:
                raise OSError(errno.EUSERS, f"server holds {self.limits.max_sessions} sessions")
            client = self._clients.get(identity)
            if client is None:
                client = self._clients[identity] = ClientLoad(identity, self.limits)
            if client.sessions >= self.limits.max_client_sessions:
                raise OSError(
                    errno.EUSERS,
                    f"client {identity} holds {self.limits.max_client_sessions} sessions",
                )
            account = self.pool.account() if self.pool is not None else None
            session = Session(
                secrets.token_hex(16), share, self.limits, peer, client_name, client, account
            )
            self._sessions[session.token] = session
            client.sessions += 1
        return session

    def _forget_locked(self, session: Session) -> None:
        """Count ``session`` (already out of ``_sessions``) off its client."""
        client = session.client
        client.sessions -= 1
        if client.sessions <= 0 and self._clients.get(client.identity) is client:
            del self._clients[client.identity]

    def get(self, token: str) -> Session | None:
        return self._sessions.get(token)

    def drop(self, token: str) -> Session | None:
        with self._lock:
            session = self._sessions.pop(token, None)
            if session is not None:
                self._forget_locked(session)
        if session is not None:
            session.close()
        return session

    def reap(self, now: float | None = None) -> list[Session]:
        """End the sessions idle past the idle timeout, and those whose client's hold stream
        ended more than the grace period ago."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [
                s for s in self._sessions.values() if s.idle_since(now) > self.limits.idle_timeout
            ]
            unheld = [
                s
                for s in self._sessions.values()
                if s not in idle and s.unheld_for(now) > self.limits.hold_grace
            ]
            for session in idle + unheld:
                del self._sessions[session.token]
                self._forget_locked(session)
        for session in idle:
            log.info(
                "session %s (%s, share %s) reaped after %.0f s idle",
                session.short,
                session.client_name or session.peer,
                session.share.name,
                self.limits.idle_timeout,
            )
        for session in unheld:
            log.info(
                "session %s (%s, share %s): its client's channel closed and was not opened again",
                session.short,
                session.client_name or session.peer,
                session.share.name,
            )
        for session in idle + unheld:
            session.close()
        return idle + unheld

    def close_all(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
            self._clients.clear()
        for session in sessions:
            session.close()
