"""Carry gRPC over AF_VSOCK although grpcio is built without vsock support.

grpcio only dials and listens on tcp and unix sockets, so bridgefs relays the vsock leg itself:

* host: a ``Forwarder`` listens on AF_VSOCK and relays each connection to a private unix socket
  that the gRPC server listens on;
* guest: a ``Forwarder`` listens on a private unix socket and relays each connection to
  AF_VSOCK CID:PORT; the gRPC channel dials that unix socket.

The forwarder takes both socket families as parameters, so tests run it with AF_UNIX.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import shutil
import socket
import tempfile
import threading
import time

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024
_CONNECT_TIMEOUT = 10.0


class Forwarder:
    """Accept on one socket; relay each connection byte for byte to a new connection to a target."""

    def __init__(
        self,
        listen_family: int,
        listen_addr,
        target_family: int | None,
        target_addr,
        *,
        backlog: int = 64,
        name: str = "forwarder",
        peer_check=None,
        socket_mode: int | None = None,
    ):
        self.listen_family = listen_family
        self.listen_addr = listen_addr
        self.target_family = target_family
        self.target_addr = target_addr
        self.name = name
        # peer_check(sock, addr) -> reason to refuse, or None: run on each connection before
        # anything is relayed (the peer's uid on a unix socket, its CID on vsock).
        self.peer_check = peer_check
        self.socket_mode = socket_mode  # AF_UNIX: the socket file's mode, whatever the umask
        self._backlog = backlog
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)

    @property
    def address(self):
        """The bound address (for AF_INET with port 0: the chosen port)."""
        assert self._sock is not None, "start() first"
        return self._sock.getsockname()

    def start(self) -> Forwarder:
        if self._sock is None:
            self.bind()
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"{self.name}-accept", daemon=True
        )
        self._thread.start()
        return self

    def bind(self) -> Forwarder:
        """Bind and listen without relaying yet (a sandboxed server binds before it restricts
        itself, and starts threads after)."""
        sock = socket.socket(self.listen_family, socket.SOCK_STREAM)
        try:
            if self.listen_family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.socket_mode is not None and self.listen_family == socket.AF_UNIX:
                bind_unix(self.listen_addr, self.socket_mode, sock.bind)
            else:
                sock.bind(self.listen_addr)
            sock.listen(self._backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        return self

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = list(self._conns)
        # Closing a listening socket does not wake a thread blocked on it (and shutdown() does
        # not either for every family), so the accept loop also polls a pipe.
        os.write(self._wake_w, b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        for conn in conns:
            _shutdown(conn)
        if self.listen_family == socket.AF_UNIX and isinstance(self.listen_addr, str):
            try:
                os.unlink(self.listen_addr)
            except OSError:
                pass

    def __enter__(self) -> Forwarder:
        return self.start() if self._sock is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- relaying ------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        listener = self._sock
        assert listener is not None  # (started)
        poller = select.poll()
        poller.register(listener.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._wake_r in ready or self._closed:
                return
            try:
                client, peer = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("%s: accept: %s; retrying", self.name, exc)
                    time.sleep(0.1)
                    continue
                log.exception("%s: accept failed", self.name)
                return
            client.setblocking(True)
            refusal = self._refusal(client, peer)
            if refusal is not None:
                log.warning("%s: refused a connection: %s", self.name, refusal)
                client.close()
                continue
            threading.Thread(
                target=self._connect_and_relay,
                args=(client,),
                name=f"{self.name}-conn",
                daemon=True,
            ).start()

    def _refusal(self, client: socket.socket, peer) -> str | None:
        if self.peer_check is None:
            return None
        try:
            return self.peer_check(client, peer)
        except OSError as exc:
            return f"cannot tell who the peer is: {exc}"

    def _connect_and_relay(self, client: socket.socket) -> None:
        assert self.target_family is not None  # (None only where a subclass relays otherwise)
        upstream = socket.socket(self.target_family, socket.SOCK_STREAM)
        try:
            upstream.settimeout(_CONNECT_TIMEOUT)
            upstream.connect(self.target_addr)
            upstream.settimeout(None)
        except OSError as exc:
            log.warning("%s: cannot reach %r: %s", self.name, self.target_addr, exc)
            upstream.close()
            client.close()
            return
        with self._lock:
            if self._closed:
                upstream.close()
                client.close()
                return
            self._conns.update((client, upstream))
        other = threading.Thread(
            target=self._pump, args=(upstream, client), name=f"{self.name}-down", daemon=True
        )
        other.start()
        self._pump(client, upstream)
        other.join()
        with self._lock:
            self._conns.difference_update((client, upstream))
        client.close()
        upstream.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            # One side broke: tear down both directions so the other pump ends too.
            _shutdown(src)
            _shutdown(dst)
            return
        # Half-close: pass the EOF on and let the other direction finish on its own.
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def bind_unix(path: str, mode: int, bind) -> None:
    """Have ``bind(p)`` create a unix socket at ``path`` with ``mode``, whatever the umask.

    It is bound in a 0700 directory beside ``path``, given its mode there and renamed into
    place, so there is no moment at which it exists at ``path`` with the umask's mode."""
    private = tempfile.mkdtemp(prefix=".bfs", dir=os.path.dirname(os.path.abspath(path)))
    try:
        inner = os.path.join(private, "s")
        bind(inner)
        os.chmod(inner, mode)
        os.rename(inner, path)
    finally:
        try:
            os.rmdir(private)
        except OSError:
            log.warning("could not remove %s", private)


class PrivateSocketDir:
    """A 0700 temporary directory for unix sockets only this user may dial."""

    def __init__(self, prefix: str = "bridgefs-"):
        from .control import runtime_dir  # /tmp may be missing or read-only on a fresh guest

        self.path = tempfile.mkdtemp(prefix=prefix, dir=runtime_dir())
        os.chmod(self.path, 0o700)

    def socket_path(self, name: str) -> str:
        return os.path.join(self.path, name)

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def vsock_listener(cid: int, port: int, unix_path: str) -> Forwarder:
    """Host side: accept vsock connections on (cid, port) and relay them to ``unix_path``."""
    return Forwarder(
        socket.AF_VSOCK, (cid, port), socket.AF_UNIX, unix_path, name=f"vsock-listen-{port}"
    ).start()


def vsock_dialer(cid: int, port: int, unix_path: str) -> Forwarder:
    """Guest side: accept on the private ``unix_path`` and relay to vsock (cid, port)."""
    return Forwarder(
        socket.AF_UNIX, unix_path, socket.AF_VSOCK, (cid, port), name=f"vsock-dial-{cid}-{port}"
    ).start()
