"""Client sessions: one per Handshake, each with its own handle tables and bounds.

A session ends with Goodbye, when the server stops, or when it has made no call for
``Limits.idle_timeout`` seconds (the client pings while idle), so a client that vanished does not
hold host fds forever.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import threading
import time

from bridgefs.server.echo import EchoLog
from bridgefs.server.handles import Limits, NodeTable, OpenTable
from bridgefs.server.localfs import LocalFs
from bridgefs.server.shares import Share

log = logging.getLogger("bridgefs.server")


class Session:
    def __init__(self, token: str, share: Share, limits: Limits, peer: str, client_name: str):
        self.token = token
        self.share = share
        self.limits = limits
        self.peer = peer
        self.client_name = client_name
        self.nodes = NodeTable(os.dup(share.root_fd), share.root_key, limits.max_nodes)
        self.files = OpenTable(limits.max_open)
        self.echo = EchoLog()  # this session's own recent changes, kept out of its Watch stream
        self.fs = LocalFs(share, self.nodes, self.files, self.echo)
        self._lock = threading.Lock()
        self._inflight = 0
        self.last_seen = time.monotonic()
        self.closed = False

    @property
    def short(self) -> str:
        return self.token[:8]

    def enter(self) -> None:
        with self._lock:
            if self.closed:
                raise OSError(errno.ESTALE, "session closed")
            if self._inflight >= self.limits.max_inflight:
                raise OSError(errno.EAGAIN, f"{self.limits.max_inflight} calls in flight")
            self._inflight += 1
            self.last_seen = time.monotonic()

    def exit(self) -> None:
        with self._lock:
            self._inflight -= 1
            self.last_seen = time.monotonic()

    def idle_since(self, now: float) -> float:
        with self._lock:
            return 0.0 if self._inflight else now - self.last_seen

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        # Pins keep fds of calls still running open until those calls finish.
        self.fs.close()
        self.files.close_all()
        self.nodes.close_all()


class SessionRegistry:
    def __init__(self, limits: Limits):
        self.limits = limits
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, share: Share, peer: str, client_name: str) -> Session:
        with self._lock:
            if len(self._sessions) >= self.limits.max_sessions:
                raise OSError(errno.EUSERS, f"server holds {self.limits.max_sessions} sessions")
            session = Session(secrets.token_hex(16), share, self.limits, peer, client_name)
            self._sessions[session.token] = session
        return session

    def get(self, token: str) -> Session | None:
        return self._sessions.get(token)

    def drop(self, token: str) -> Session | None:
        with self._lock:
            session = self._sessions.pop(token, None)
        if session is not None:
            session.close()
        return session

    def reap(self, now: float | None = None) -> list[Session]:
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [
                s for s in self._sessions.values() if s.idle_since(now) > self.limits.idle_timeout
            ]
            for session in idle:
                del self._sessions[session.token]
        for session in idle:
            log.info(
                "session %s (%s, share %s) reaped after %.0f s idle",
                session.short,
                session.client_name or session.peer,
                session.share.name,
                self.limits.idle_timeout,
            )
            session.close()
        return idle

    def close_all(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()
