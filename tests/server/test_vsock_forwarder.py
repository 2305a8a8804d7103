"""The vsock relay, run with AF_UNIX on both legs (this machine has no vsock loopback)."""

import os
import socket
import threading

import pytest

from bridgefs.client import RemoteFileSystem
from bridgefs.fuse.filesystem import Context
from bridgefs.vsock import Forwarder


def _echo_server(path: str):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)

    def serve_one(conn):
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)  # echo the half-close back

    def loop():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return srv


def _roundtrip(path: str, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect(path)
        sender = threading.Thread(target=lambda: (c.sendall(payload), c.shutdown(socket.SHUT_WR)))
        sender.start()
        chunks = []
        while data := c.recv(1 << 20):
            chunks.append(data)
        sender.join()
        return b"".join(chunks)


def test_relays_bytes_and_half_close(tmp_path):
    echo = _echo_server(str(tmp_path / "echo.sock"))
    fwd = Forwarder(
        socket.AF_UNIX, str(tmp_path / "front.sock"), socket.AF_UNIX, str(tmp_path / "echo.sock")
    ).start()
    try:
        payload = os.urandom(5 << 20)
        results = [None] * 4

        def run(i):
            results[i] = _roundtrip(str(tmp_path / "front.sock"), payload[i:])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert all(results[i] == payload[i:] for i in range(4))
    finally:
        fwd.close()
        echo.close()
    assert not (tmp_path / "front.sock").exists()


def test_unreachable_target_closes_the_connection(tmp_path):
    with Forwarder(
        socket.AF_UNIX, str(tmp_path / "front.sock"), socket.AF_UNIX, str(tmp_path / "nobody.sock")
    ) as fwd:
        assert fwd.address == str(tmp_path / "front.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(10)
            c.connect(str(tmp_path / "front.sock"))
            assert c.recv(10) == b""


def test_close_ends_live_connections(tmp_path):
    echo = _echo_server(str(tmp_path / "echo.sock"))
    fwd = Forwarder(
        socket.AF_UNIX, str(tmp_path / "front.sock"), socket.AF_UNIX, str(tmp_path / "echo.sock")
    ).start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(10)
        c.connect(str(tmp_path / "front.sock"))
        c.sendall(b"ping")
        assert c.recv(4) == b"ping"
        fwd.close()
        assert c.recv(10) == b""
    echo.close()


def test_tcp_listener_picks_a_port(tmp_path):
    echo = _echo_server(str(tmp_path / "echo.sock"))
    with Forwarder(
        socket.AF_INET, ("127.0.0.1", 0), socket.AF_UNIX, str(tmp_path / "echo.sock")
    ) as fwd:
        host, port = fwd.address
        assert port != 0
        with socket.create_connection((host, port), timeout=10) as c:
            c.sendall(b"hello")
            assert c.recv(5) == b"hello"
    echo.close()


def test_grpc_through_the_relay(tree, start_server, tmp_path):
    """The client-side arrangement: the channel dials a unix socket relayed to the server."""
    share, _ = tree
    server = start_server({"s": (str(share), False)})
    inner = server.addresses[0].removeprefix("unix:")
    with Forwarder(socket.AF_UNIX, str(tmp_path / "relay.sock"), socket.AF_UNIX, inner):
        with RemoteFileSystem(f"unix:{tmp_path / 'relay.sock'}", "s") as fs:
            ctx = Context()
            entry = fs.lookup(ctx, 1, b"file")
            opened = fs.open(ctx, entry.ino, os.O_RDONLY)
            big = os.urandom(1 << 20)
            (share / "big").write_bytes(big)
            big_entry = fs.lookup(ctx, 1, b"big")
            big_fh = fs.open(ctx, big_entry.ino, os.O_RDONLY).fh
            assert fs.read(ctx, big_entry.ino, big_fh, 0, 1 << 20) == big
            assert fs.read(ctx, entry.ino, opened.fh, 0, 100) == b"inside\n"


def test_server_vsock_listener_starts_and_stops(tree, start_server):
    """Listening on vsock works where the kernel has it; nothing dials it here (no loopback)."""
    share, _ = tree
    try:
        server = start_server({"s": (str(share), False)}, listen=["vsock:any:0"])
    except OSError as exc:
        pytest.skip(f"no AF_VSOCK here: {exc}")
    assert server.addresses[0].startswith("vsock:any:")
    server.stop(0)


def test_client_vsock_address_relays_through_a_private_socket():
    """Only the relay's set-up is checked: nothing is dialed (no RPC is made)."""
    from bridgefs.client.channel import open_channel

    conn = open_channel("vsock:3:5000")
    try:
        assert conn._relay is not None and conn._relay.target_addr == (3, 5000)
        path = conn._relay.listen_addr
        assert os.path.exists(path)
        assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
    finally:
        conn.close()
    assert not os.path.exists(os.path.dirname(path))
