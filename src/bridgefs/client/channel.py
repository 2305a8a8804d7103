"""Address string -> gRPC channel, with a vsock or virtio-serial leg relayed through a private
unix socket.

Message limits on both ends are MAX_MESSAGE (1 MiB of payload plus headroom).  Reconnect backoff
is kept short so that a restarted server is found again within seconds; calls made while the
server is unreachable fail at once (no wait_for_ready) and the caller turns that into ENOTCONN.
"""

from __future__ import annotations

import errno

import grpc

from bridgefs.address import parse_address
from bridgefs.credentials import ClientCredentials
from bridgefs.heap import keep_freed_memory
from bridgefs.rpc import MAX_MESSAGE
from bridgefs.serial import SerialDialer
from bridgefs.vsock import Forwarder, PrivateSocketDir, vsock_dialer

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.enable_retries", 0),
]

# gRPC status -> errno for calls that never got an answer: the server is gone or unreachable
# (ENOTCONN), did not answer in time (EIO), or is out of capacity (EAGAIN).
GRPC_ERRNO = {
    grpc.StatusCode.UNAVAILABLE: errno.ENOTCONN,
    grpc.StatusCode.CANCELLED: errno.ENOTCONN,
    grpc.StatusCode.DEADLINE_EXCEEDED: errno.EIO,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errno.EAGAIN,
    grpc.StatusCode.UNIMPLEMENTED: errno.ENOSYS,
    grpc.StatusCode.UNAUTHENTICATED: errno.EACCES,
    grpc.StatusCode.PERMISSION_DENIED: errno.EACCES,
}


def errno_of(exc: grpc.RpcError) -> int:
    code = exc.code() if hasattr(exc, "code") else None
    return GRPC_ERRNO.get(code, errno.EIO)


class Connection:
    """A channel to one server address, plus the vsock or serial relay it may need."""

    def __init__(self, address: str, credentials: ClientCredentials | None = None):
        self.address = address
        addr = parse_address(address)
        keep_freed_memory()
        self._relay: Forwarder | SerialDialer | None = None
        self._dir: PrivateSocketDir | None = None
        if addr.kind == "vsock":
            self._dir = PrivateSocketDir("bridgefs-mount-")
            path = self._dir.socket_path("vsock.sock")
            self._relay = vsock_dialer(addr.cid, addr.port, path)
            target = f"unix:{path}"
        elif addr.kind == "serial":
            self._dir = PrivateSocketDir("bridgefs-mount-")
            path = self._dir.socket_path("serial.sock")
            try:
                self._relay = SerialDialer(addr.path, path)
            except BaseException:
                self._dir.cleanup()
                raise
            target = f"unix:{path}"
        else:
            target = addr.grpc_target()
        if credentials is not None and credentials.tls:
            if addr.kind != "tcp":
                raise ValueError(f"TLS is for tcp: addresses, not {address}")
            tls = grpc.ssl_channel_credentials(
                root_certificates=credentials.tls_ca,
                private_key=credentials.tls_key,
                certificate_chain=credentials.tls_cert,
            )
            options: list[tuple[str, int | str]] = list(CHANNEL_OPTIONS)
            if credentials.tls_server_name:
                options.append(("grpc.ssl_target_name_override", credentials.tls_server_name))
            self.channel = grpc.secure_channel(target, tls, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)

    def close(self) -> None:
        self.channel.close()
        if self._relay is not None:
            self._relay.close()
        if self._dir is not None:
            self._dir.cleanup()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_channel(address: str, credentials: ClientCredentials | None = None) -> Connection:
    """Parse ``address`` (ValueError if bad) and return a Connection; nothing is dialed yet."""
    return Connection(address, credentials)
