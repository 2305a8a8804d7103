"""Who may call: the token check every call passes before it reaches a share, and the peer
checks the relays make before they relay a connection (uid on unix sockets, CID on vsock).

The token interceptor runs before any servicer method, so a caller without the secret never
reaches a session or a share; it learns only UNAUTHENTICATED.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import grpc

from bridgefs.credentials import TOKEN_KEY, TOKEN_SCHEME

log = logging.getLogger("bridgefs.server")

# A peer check gets the accepted socket and the address accept() returned; it answers why the
# peer is refused, or None to relay it.
PeerCheck = Callable[[socket.socket, Any], "str | None"]


@dataclass(frozen=True)
class Auth:
    """What the server asks of callers: ``token`` on every call (None: no token), TLS files for
    tcp listeners, the uids a unix socket accepts besides the server's own and root, and the
    CIDs a vsock listener accepts (empty: any)."""

    token: str | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    tls_client_ca: bytes | None = None
    allow_uids: frozenset[int] = field(default_factory=frozenset)
    allow_cids: frozenset[int] = field(default_factory=frozenset)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def server_credentials(self) -> grpc.ServerCredentials:
        assert self.tls_cert is not None and self.tls_key is not None
        return grpc.ssl_server_credentials(
            [(self.tls_key, self.tls_cert)],
            root_certificates=self.tls_client_ca,
            require_client_auth=self.tls_client_ca is not None,
        )


class _Quiet:
    """At most one log line per peer host per ``every`` seconds: a client knocking without the
    token in a loop must not fill the log."""

    def __init__(self, every: float = 10.0):
        self.every = every
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def refused(self, peer: str) -> None:
        host = peer.rsplit(":", 1)[0] if peer.startswith(("ipv4:", "ipv6:")) else peer
        now = time.monotonic()
        with self._lock:
            self._counts[host] = self._counts.get(host, 0) + 1
            if now - self._last.get(host, -self.every) < self.every:
                return
            self._last[host] = now
            count = self._counts.pop(host)
            if len(self._last) > 4096:  # forget hosts long quiet
                self._last = {h: t for h, t in self._last.items() if now - t < self.every}
        log.warning(
            "refused %d call(s) from %s: no valid token (said at most every %.0f s)",
            count,
            host,
            self.every,
        )


_quiet = _Quiet()


def _refuse(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    def deny(request: object, context: grpc.ServicerContext) -> None:
        _quiet.refused(str(context.peer()))
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "bridgefs: a valid token is required")

    kinds: dict[str, Callable[..., grpc.RpcMethodHandler]] = {
        "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }
    if handler.request_streaming or handler.response_streaming:
        kind = (
            ("stream" if handler.request_streaming else "unary")
            + "_"
            + ("stream" if handler.response_streaming else "unary")
        )
        make = kinds[kind]
    else:
        make = grpc.unary_unary_rpc_method_handler
    return make(deny, request_deserializer=handler.request_deserializer)


class TokenInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]  # grpc has no annotations
    """Refuses every call whose metadata lacks ``authorization: Bearer <token>``."""

    def __init__(self, token: str):
        self._expected = (TOKEN_SCHEME + token).encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        given = b""
        for key, value in details.invocation_metadata or ():
            if key == TOKEN_KEY:
                given = value.encode() if isinstance(value, str) else bytes(value)
                break
        # compare_digest takes as long whatever prefix matches: the token cannot be guessed
        # byte by byte from how fast refusals come back.
        if hmac.compare_digest(given, self._expected):
            return handler
        return _refuse(handler)


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def uid_check(allow: Collection[int]) -> PeerCheck:
    """Accept the server's own uid, root, and ``allow``."""
    allowed = {os.geteuid(), 0, *allow}

    def check(sock: socket.socket, _addr: Any) -> str | None:
        uid = peer_uid(sock)
        return None if uid in allowed else f"uid {uid} is not allowed (--allow-uid)"

    return check


def cid_check(allow: Collection[int]) -> PeerCheck | None:
    """Accept only the CIDs in ``allow``; None when any VM may connect."""
    if not allow:
        return None
    allowed = set(allow)

    def check(_sock: socket.socket, addr: Any) -> str | None:
        cid = addr[0] if isinstance(addr, tuple) and addr else None
        return None if cid in allowed else f"CID {cid} is not allowed (--allow-cid)"

    return check


def client_identity(context: Any) -> str:
    """Who a caller is, for bounds per client: its TLS certificate's subject, else its
    transport peer without the port (every connection over one unix socket or relay is one
    client)."""
    try:
        subject = context.auth_context().get("x509_subject")
    except (AttributeError, TypeError):
        subject = None
    if subject:
        return "tls:" + b",".join(subject).decode(errors="replace")
    peer = str(context.peer())
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer
