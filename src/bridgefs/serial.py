"""Carry gRPC over a virtio-serial port, for a QEMU that has no vhost-vsock.

A virtio-serial port is one byte stream between the guest (a character device, ``/dev/vport0p1``
or ``/dev/virtio-ports/NAME``) and QEMU, which hands the host end to a ``-chardev``.  gRPC
wants a connection it can drop and dial again (after a server restart, say), so both ends run
a small multiplexer over the port:

* guest: a ``SerialDialer`` accepts on a private unix socket (the gRPC channel dials it, as for
  vsock) and carries each connection as a numbered stream of frames over the port;
* host: a ``SerialListener`` listens on the unix socket that QEMU's
  ``-chardev socket,path=PATH,reconnect=1`` connects to, and opens a connection to the gRPC
  server for each stream.

Who connects to whom: QEMU dials the listener and dials again (``reconnect``) after the
server restarts, so neither the VM nor QEMU has to be told.  The port itself survives no such
break cleanly: QEMU drops what the guest writes while the host end is gone, and keeps what the
host wrote while the guest had the port closed.  So every frame carries the number of the
*session* it belongs to: the host starts a new session (HELLO) whenever QEMU connects or the
guest asks for one (RESYNC, when it opens the port); each side drops the other's frames of any
other session, and every stream of an ended session is closed, which the gRPC channel sees as a
lost connection and dials again.  A frame cut short by a break is skipped by looking for the
next frame's magic.
"""

from __future__ import annotations

import errno
import glob
import itertools
import logging
import os
import random
import select
import socket
import struct
import threading
import time

from .vsock import Forwarder

log = logging.getLogger(__name__)

MAGIC = b"BFS\x01"
HEADER = struct.Struct(">4sBIII")  # magic, kind, session, stream, payload length
HELLO, RESYNC, OPEN, DATA, CLOSE = range(1, 6)
_KINDS = frozenset((HELLO, RESYNC, OPEN, DATA, CLOSE))
MAX_PAYLOAD = 64 * 1024
_SESSION_WAIT = 5.0  # how long a new connection waits for the host end to be there
_HOST_GONE_POLL = 0.1  # the port reads EOF at once while QEMU has no host end connected
_RESYNC_AGAIN = 2.0  # seconds without an answer before a RESYNC is sent again

Frame = tuple[int, int, int, bytes]  # kind, session, stream, payload


class FrameReader:
    """Cuts a byte stream into frames; skips bytes that do not start a frame."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        while len(buf) >= HEADER.size:
            magic, kind, session, stream, length = HEADER.unpack_from(buf)
            if magic != MAGIC or kind not in _KINDS or length > MAX_PAYLOAD:
                found = buf.find(MAGIC, 1)
                del buf[: found if found > 0 else len(buf) - len(MAGIC) + 1]
                continue
            end = HEADER.size + length
            if len(buf) < end:
                break
            frames.append((kind, session, stream, bytes(buf[HEADER.size : end])))
            del buf[:end]
        return frames


def frame(kind: int, session: int, stream: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(MAGIC, kind, session, stream, len(payload)) + payload


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Streams:
    """The connections carried over one port, each pumped into DATA frames by a thread."""

    def __init__(self, write, name: str):
        self._write = write  # writes bytes to the port, whole
        self._wlock = threading.Lock()
        self._lock = threading.Lock()
        self._socks: dict[int, socket.socket] = {}
        self.name = name

    def send(self, kind: int, session: int, stream: int, payload: bytes = b"") -> None:
        data = frame(kind, session, stream, payload)
        with self._wlock:
            self._write(data)

    def attach(self, session: int, stream: int, sock: socket.socket) -> None:
        self.register(stream, sock)
        self.start(session, stream, sock)

    def register(self, stream: int, sock: socket.socket) -> None:
        """Known before its OPEN is sent, so that an answering CLOSE finds it."""
        with self._lock:
            self._socks[stream] = sock

    def start(self, session: int, stream: int, sock: socket.socket) -> None:
        threading.Thread(
            target=self._pump,
            args=(session, stream, sock),
            daemon=True,
            name=f"{self.name}-{stream}",
        ).start()

    def deliver(self, session: int, stream: int, payload: bytes) -> None:
        sock = self._socks.get(stream)
        if sock is None:
            return
        try:
            sock.sendall(payload)
        except OSError:
            if self.drop(stream):
                self._send_quietly(CLOSE, session, stream)

    def drop(self, stream: int) -> bool:
        """Close one stream's connection; False if it was not (or no longer) open."""
        with self._lock:
            sock = self._socks.pop(stream, None)
        if sock is None:
            return False
        _shutdown(sock)
        return True

    def drop_all(self) -> None:
        with self._lock:
            socks, self._socks = list(self._socks.values()), {}
        for sock in socks:
            _shutdown(sock)

    def _send_quietly(self, kind: int, session: int, stream: int, payload: bytes = b"") -> None:
        try:
            self.send(kind, session, stream, payload)
        except OSError:
            pass

    def _pump(self, session: int, stream: int, sock: socket.socket) -> None:
        try:
            while True:
                data = sock.recv(MAX_PAYLOAD)
                if not data:
                    break
                self.send(DATA, session, stream, data)
        except OSError:
            pass
        finally:
            if self.drop(stream):
                self._send_quietly(CLOSE, session, stream)
            sock.close()


class _Acceptor(Forwarder):
    """The Forwarder's accept loop, handing each accepted connection to ``adopt``."""

    def __init__(self, family: int, addr, adopt, name: str):
        # 0600 whatever the umask: whoever may dial the socket reaches the server untokened.
        super().__init__(family, addr, None, None, name=name, socket_mode=0o600)
        self._adopt = adopt

    def _connect_and_relay(self, client: socket.socket) -> None:
        self._adopt(client)


# --- guest ---------------------------------------------------------------------------------------
def resolve_port(spec: str) -> str:
    """A port's device from its name (``-device virtserialport,name=NAME``) or device path.

    udev links names under /dev/virtio-ports/; a minimal guest has no udev, so sysfs is read."""
    if spec.startswith("/"):
        return spec
    link = f"/dev/virtio-ports/{spec}"
    if os.path.exists(link):
        return link
    for name_file in glob.glob("/sys/class/virtio-ports/*/name"):
        try:
            with open(name_file) as f:
                if f.read().strip() == spec:
                    return f"/dev/{os.path.basename(os.path.dirname(name_file))}"
        except OSError:
            continue
    if os.path.exists(f"/dev/{spec}"):
        return f"/dev/{spec}"
    raise OSError(
        errno.ENOENT,
        f"no virtio-serial port named {spec!r} (is the VM given "
        f"-device virtserialport,name={spec} and the virtio_console "
        f"module loaded?)",
    )


class SerialDialer:
    """Guest side: accept on the private ``unix_path`` and carry each connection over the port."""

    def __init__(self, port: str | int, unix_path: str):
        if isinstance(port, int):  # an open fd: tests give one end of a socket pair
            self.device, self._fd = f"fd {port}", port
        else:
            self.device = resolve_port(port)
            try:
                self._fd = os.open(self.device, os.O_RDWR | os.O_CLOEXEC)
            except OSError as exc:
                hint = (
                    " (the port is open elsewhere: one mount per port)"
                    if exc.errno == errno.EBUSY
                    else ""
                )
                raise OSError(
                    exc.errno, f"cannot open {self.device}: {exc.strerror}{hint}"
                ) from None
        self._streams = _Streams(self._write_port, "serial-stream")
        self._session = 0
        self._nonce = 0  # of our last RESYNC: the HELLO that answers it carries it back
        self._resync_sent = 0.0
        self._resyncing = False
        self._ready = threading.Condition()
        self._ids = itertools.count(1)
        self._closed = False
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._reader = threading.Thread(target=self._read_loop, daemon=True, name="serial-read")
        self._reader.start()
        # Ask for a session of our own: the one QEMU's host end started may belong to an earlier
        # guest process.
        self._start_resync()
        self._acceptor = _Acceptor(socket.AF_UNIX, unix_path, self._adopt, "serial-accept")
        self._acceptor.start()

    @property
    def session(self) -> int:
        return self._session

    def _start_resync(self) -> None:
        with self._ready:
            if self._resyncing or self._closed:
                return
            self._resyncing = True
            self._nonce = random.randrange(1, 1 << 32)
            self._resync_sent = time.monotonic()
            nonce = self._nonce
        # A write blocks while no host end is connected, hence a thread of its own.
        threading.Thread(
            target=self._resync, args=(nonce,), daemon=True, name="serial-resync"
        ).start()

    def _resync(self, nonce: int) -> None:
        try:
            self._streams.send(RESYNC, nonce, 0)
        except OSError as exc:
            log.warning("serial %s: %s", self.device, exc)
        finally:
            with self._ready:
                self._resyncing = False

    def _write_port(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def _adopt(self, client: socket.socket) -> None:
        with self._ready:
            self._ready.wait_for(lambda: self._session or self._closed, _SESSION_WAIT)
            session = self._session
        if not session or self._closed:
            log.debug("serial %s: no host end; refusing a connection", self.device)
            client.close()
            return
        stream = next(self._ids)
        self._streams.register(stream, client)
        try:
            self._streams.send(OPEN, session, stream)
        except OSError:
            self._streams.drop(stream)
            client.close()
            return
        self._streams.start(session, stream, client)

    def _end_session(self) -> None:
        with self._ready:
            self._session = 0
        self._streams.drop_all()

    def _read_loop(self) -> None:
        frames = FrameReader()
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._closed:
            ready = dict(poller.poll(_HOST_GONE_POLL * 1000 if not self._session else None))
            if self._wake_r in ready or self._closed:
                return
            if not self._session and time.monotonic() - self._resync_sent > _RESYNC_AGAIN:
                self._start_resync()  # QEMU may have dropped it while its host end was away
            if not ready:
                continue
            try:
                data = os.read(self._fd, 256 * 1024)
            except (InterruptedError, BlockingIOError):
                continue
            except OSError as exc:
                log.warning("serial %s: read: %s", self.device, exc)
                self._end_session()
                return
            if not data:
                # No host end (QEMU's chardev is not connected): what was carried is gone.
                if self._session:
                    log.info("serial %s: host end gone", self.device)
                    self._end_session()
                frames.reset()
                self._start_resync()  # sent once the host end is back
                time.sleep(_HOST_GONE_POLL)
                continue
            for kind, session, stream, payload in frames.feed(data):
                self._handle(kind, session, stream, payload)

    def _handle(self, kind: int, session: int, stream: int, payload: bytes) -> None:
        if kind == HELLO:
            if payload == self._nonce.to_bytes(4, "big") and session != self._session:
                self._streams.drop_all()
                with self._ready:
                    self._session = session
                    self._ready.notify_all()
                log.debug("serial %s: session %08x", self.device, session)
            elif payload != self._nonce.to_bytes(4, "big") and self._session:
                # A host end that started afresh (the server restarted faster than we saw it go).
                log.info("serial %s: host end restarted", self.device)
                self._end_session()
                self._start_resync()
            return
        if session != self._session or not session:
            return
        if kind == DATA:
            self._streams.deliver(session, stream, payload)
        elif kind == CLOSE:
            self._streams.drop(stream)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._ready:
            self._ready.notify_all()
        self._acceptor.close()
        self._streams.drop_all()
        os.write(self._wake_w, b"x")
        self._reader.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)
        os.close(self._fd)


# --- host ----------------------------------------------------------------------------------------
class _HostPort:
    """One connection from QEMU's chardev: its streams, each a connection to the server."""

    def __init__(self, conn: socket.socket, target: str):
        self.conn = conn
        self.target = target
        self._streams = _Streams(conn.sendall, "serial-host")
        self._session = 0

    def _new_session(self, nonce: bytes = b"") -> None:
        self._streams.drop_all()
        self._session = random.randrange(1, 1 << 32)
        self._streams.send(HELLO, self._session, 0, nonce)

    def run(self) -> None:
        frames = FrameReader()
        try:
            self._new_session()
            while True:
                data = self.conn.recv(256 * 1024)
                if not data:
                    break
                for kind, session, stream, payload in frames.feed(data):
                    self._handle(kind, session, stream, payload)
        except OSError as exc:
            log.debug("serial host end: %s", exc)
        finally:
            self._streams.drop_all()
            self.conn.close()

    def _handle(self, kind: int, session: int, stream: int, payload: bytes) -> None:
        if kind == RESYNC:
            self._new_session(session.to_bytes(4, "big"))
            return
        if session != self._session:
            return
        if kind == DATA:
            self._streams.deliver(session, stream, payload)
        elif kind == CLOSE:
            self._streams.drop(stream)
        elif kind == OPEN:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.settimeout(5)
                upstream.connect(self.target)
                upstream.settimeout(None)
            except OSError as exc:
                log.debug("serial: cannot reach %s: %s", self.target, exc)
                upstream.close()
                self._streams.send(CLOSE, session, stream)
                return
            self._streams.attach(session, stream, upstream)

    def close(self) -> None:
        _shutdown(self.conn)


class SerialListener:
    """Host side: accept QEMU's chardev connections on ``path`` (one per virtio-serial port, each
    dialled again after a break) and relay their streams to the gRPC server on the unix socket
    ``target``."""

    def __init__(self, path: str, target: str):
        self.path = path
        self.target = target
        self._lock = threading.Lock()
        self._ports: set[_HostPort] = set()
        self._acceptor = _Acceptor(socket.AF_UNIX, path, self._adopt, "serial-listen")

    def start(self) -> SerialListener:
        try:
            if os.path.exists(self.path) and not os.path.isdir(self.path):
                os.unlink(self.path)  # a socket left by a server that was killed
        except OSError:
            pass
        self._acceptor.start()
        return self

    def _adopt(self, conn: socket.socket) -> None:
        port = _HostPort(conn, self.target)
        with self._lock:
            self._ports.add(port)
        try:
            port.run()
        finally:
            with self._lock:
                self._ports.discard(port)

    def close(self) -> None:
        self._acceptor.close()
        with self._lock:
            ports, self._ports = list(self._ports), set()
        for port in ports:
            port.close()

    def __enter__(self) -> SerialListener:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


# --- `bridgefs serve --listen serial:PATH` -------------------------------------------------------
def split_serial_listens(argv: list[str]) -> tuple[list[str], list[str]]:
    """(argv without its ``--listen serial:PATH`` options, those PATHs)."""
    rest: list[str] = []
    paths: list[str] = []
    args = iter(argv)
    for arg in args:
        value = None
        if arg == "--listen":
            value = next(args, None)
            if value is None:
                rest.append(arg)
                break
        elif arg.startswith("--listen="):
            value = arg.split("=", 1)[1]
        if value is None:
            rest.append(arg)
        elif value.startswith("serial:") and len(value) > len("serial:"):
            paths.append(value[len("serial:") :])
        else:
            rest += ["--listen", value]
    return rest, paths


def _announce_when_reachable(target: str, paths: list[str], stop: threading.Event) -> None:
    """Say "listening on serial:PATH" once the server behind it answers, as serve does for the
    addresses it binds itself."""
    while not stop.wait(0.02):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(target)
            except OSError:
                continue
        for path in paths:
            print(f"bridgefs: listening on serial:{path}", flush=True)
        return


def serve_main(argv: list[str]) -> int:
    """``bridgefs serve``, where each ``--listen serial:PATH`` becomes a SerialListener relaying
    to a private unix socket that the server listens on."""
    from .server.main import serve_main as serve_grpc
    from .vsock import PrivateSocketDir

    rest, paths = split_serial_listens(argv)
    if not paths:
        return serve_grpc(argv)
    private = PrivateSocketDir("bridgefs-serial-")
    inner = private.socket_path("server.sock")
    listeners = []
    stop = threading.Event()
    try:
        for path in paths:
            listeners.append(SerialListener(os.path.abspath(path), inner).start())
        threading.Thread(
            target=_announce_when_reachable,
            args=(inner, paths, stop),
            daemon=True,
            name="serial-announce",
        ).start()
        return serve_grpc(rest + ["--listen", f"unix:{inner}"])
    finally:
        stop.set()
        for listener in listeners:
            listener.close()
        private.cleanup()
