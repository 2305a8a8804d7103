"""The virtio-serial relay without a VM: the guest's dialer on one end of a socket pair (as the
port), the host's per-port handler on the other, gRPC-like traffic through both."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from bridgefs import serial
from bridgefs.serial import (
    CLOSE,
    DATA,
    HELLO,
    FrameReader,
    SerialDialer,
    SerialListener,
    frame,
    split_serial_listens,
)


def test_frames_survive_garbage_and_cuts():
    """The tail of a frame whose start went to an earlier host end (a write cut by a break), with
    the magic inside it, then whole frames: the reader finds the whole ones."""
    reader = FrameReader()
    good = [frame(DATA, 7, 1, b"x" * 1000), frame(CLOSE, 7, 1), frame(HELLO, 9, 0, b"abcd")]
    stream = frame(DATA, 3, 2, b"y" * 100 + serial.MAGIC + b"y" * 400)[30:] + b"".join(good)
    got = []
    for i in range(0, len(stream), 13):  # fed in pieces, as reads return them
        got += reader.feed(stream[i : i + 13])
    assert got == [(DATA, 7, 1, b"x" * 1000), (CLOSE, 7, 1, b""), (HELLO, 9, 0, b"abcd")]
    reader.feed(frame(DATA, 3, 2, b"z" * 500)[:300])  # cut short, then the port read EOF
    reader.reset()
    assert reader.feed(good[1]) == [(CLOSE, 7, 1, b"")]


def test_split_serial_listens():
    rest, paths = split_serial_listens(
        [
            "--share",
            "a=/x",
            "--listen",
            "serial:/run/vm.sock",
            "--listen=unix:/s",
            "--listen",
            "tcp:127.0.0.1:0",
        ]
    )
    assert paths == ["/run/vm.sock"]
    assert rest == ["--share", "a=/x", "--listen", "unix:/s", "--listen", "tcp:127.0.0.1:0"]


class EchoServer:
    """A unix-socket server that echoes each connection (stands in for the gRPC server)."""

    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.accepted = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self):
        self.sock.close()


@pytest.fixture
def relay(tmp_path):
    """(dialer's unix path, echo server, listener, the 'QEMU' socket) wired as in a VM."""
    echo = EchoServer(str(tmp_path / "server.sock"))
    listener = SerialListener(str(tmp_path / "qemu.sock"), echo.path).start()
    port = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    port.connect(listener.path)  # what QEMU's -chardev socket does
    dialer = SerialDialer(os.dup(port.fileno()), str(tmp_path / "guest.sock"))
    try:
        yield str(tmp_path / "guest.sock"), echo, listener, dialer
    finally:
        dialer.close()
        listener.close()
        port.close()
        echo.close()


def _roundtrip(path: str, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.settimeout(20)
        threading.Thread(target=s.sendall, args=(payload,), daemon=True).start()
        got = bytearray()
        while len(got) < len(payload):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
        return bytes(got)


def test_streams_carry_bytes_exactly(relay):
    path, echo, _listener, _dialer = relay
    payload = os.urandom(3 * 1024 * 1024 + 17)
    assert _roundtrip(path, payload) == payload


def test_several_connections_at_once(relay):
    """The gRPC channel may hold more than one connection (a reconnect overlaps the old one)."""
    path, echo, _listener, _dialer = relay
    payloads = [os.urandom(200_000 + i) for i in range(6)]
    results = [None] * len(payloads)

    def run(i):
        results[i] = _roundtrip(path, payloads[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == payloads
    assert echo.accepted == len(payloads)


def test_server_gone_closes_the_stream(relay, tmp_path):
    """With no server behind the host end, a connection is closed at once (gRPC then reports
    UNAVAILABLE and dials again), and works again once the server is back."""
    path, echo, _listener, _dialer = relay
    echo.close()
    os.unlink(echo.path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.settimeout(10)
        try:  # (closed "at once" may mean before this write)
            s.sendall(b"hello")
            assert s.recv(10) == b""
        except (BrokenPipeError, ConnectionResetError):
            pass
    EchoServer(echo.path)
    assert _roundtrip(path, b"again") == b"again"


def test_a_new_guest_process_gets_a_session_of_its_own(relay, tmp_path):
    """A second dialer on the same port (a remount) asks for a new session: the streams of the
    first one end, those of the second one work."""
    path, echo, listener, dialer = relay
    assert _roundtrip(path, b"one") == b"one"
    old_session = dialer.session
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.settimeout(10)
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        # The host answers a RESYNC with a new session and drops the streams of the old one.
        port_fd = os.dup(dialer._fd)  # the port stays open, as QEMU keeps it
        dialer.close()
        second = SerialDialer(port_fd, str(tmp_path / "guest2.sock"))
        try:
            assert _roundtrip(str(tmp_path / "guest2.sock"), b"two") == b"two"
            assert second.session != old_session
            assert s.recv(1) == b""  # closed with the first dialer, and dropped by the host
        finally:
            second.close()
