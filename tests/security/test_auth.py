"""Who may connect: a client without the token, or with a wrong one, is refused over tcp, over a
unix socket and through the vsock relay, and reads nothing; a unix socket is 0600 whatever the
umask and refuses other uids; `serve` refuses an open tcp: or vsock: listener."""

from __future__ import annotations

import errno
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading

import grpc
import pytest
from securitykit import Raw, grpc_target, read_token, run_cli

from bridgefs.rpc import SESSION_KEY, pb, pb_grpc
from bridgefs.server.auth import cid_check, uid_check
from bridgefs.vsock import Forwarder

NOBODY = 65534


def _refused(address: str, share: str, token: str | None) -> None:
    with pytest.raises(grpc.RpcError) as info:
        Raw(address, share, token)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _forged_calls_refused(address: str, token: str | None) -> None:
    """Calls that skip the handshake and name a session are refused before any share."""
    channel = grpc.insecure_channel(grpc_target(address))
    try:
        stub = pb_grpc.FilesStub(channel)
        meta = [(SESSION_KEY, "0" * 32)]
        if token:
            meta.append(("authorization", "Bearer " + token))
        for call, request in (
            (stub.Lookup, pb.NameRequest(parent=1, name=b"file")),
            (stub.Read, pb.ReadRequest(handle=1, offset=0, size=100)),
        ):
            with pytest.raises(grpc.RpcError) as info:
                call(request, metadata=meta, timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            next(iter(stub.Watch(pb.WatchRequest(), metadata=meta, timeout=30)))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        channel.close()


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_without_or_with_a_wrong_token_nothing_is_read(
    kind, tree, tmp_path, serve, token_file, wrong_token_file
):
    share, _ = tree
    listen = "tcp:127.0.0.1:0" if kind == "tcp" else f"unix:{tmp_path / 's.sock'}"
    server = serve("--listen", listen, "--token-file", str(token_file), shares={"s": str(share)})
    _refused(server.address, "s", None)
    _refused(server.address, "s", read_token(wrong_token_file))
    _refused(server.address, "s", read_token(token_file)[:-1])
    _forged_calls_refused(server.address, None)
    _forged_calls_refused(server.address, read_token(wrong_token_file))
    client = Raw(server.address, "s", read_token(token_file))
    try:
        assert client.read_file(b"file") == b"inside\n"
    finally:
        client.close()
    assert "no valid token" in server.log()


def test_serve_refuses_open_tcp_and_vsock_listeners(tree):
    share, _ = tree
    for listen in ("tcp:127.0.0.1:0", "vsock:any:0"):
        proc = run_cli(["serve", "--share", f"s={share}", "--listen", listen])
        assert proc.returncode == 2
        assert "--token-file" in proc.stderr and "head -c 32 /dev/urandom" in proc.stderr
        assert "--insecure" in proc.stderr


def test_a_token_file_others_can_read_is_refused(tree, token_file):
    share, _ = tree
    os.chmod(token_file, 0o640)
    proc = run_cli(
        [
            "serve",
            "--share",
            f"s={share}",
            "--listen",
            "tcp:127.0.0.1:0",
            "--token-file",
            str(token_file),
        ]
    )
    assert proc.returncode == 2
    assert "chmod 600" in proc.stderr


def test_unix_socket_is_0600_whatever_the_umask(tree, tmp_path, serve):
    share, _ = tree
    path = tmp_path / "s.sock"
    old = os.umask(0)
    try:
        serve("--listen", f"unix:{path}", shares={"s": str(share)})
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o600


def _as_nobody_connect(path: str) -> str:
    """Connect to ``path`` as uid 65534 and report what happened: "EACCES", "eof" (the server
    closed it unread) or "data" (it spoke HTTP/2 to us)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv is not installed: install the Debian package 'util-linux'")
    # The system's python3: the test's own interpreter may sit where uid 65534 cannot reach.
    python = "/usr/bin/python3"
    script = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.settimeout(30)\n"
        "try:\n"
        "    s.connect(sys.argv[1])\n"
        "except PermissionError:\n"
        "    print('EACCES'); sys.exit()\n"
        "try:\n"
        "    s.sendall(b'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n' + bytes(9))\n"
        "    data = s.recv(100)\n"
        "except (ConnectionResetError, BrokenPipeError):\n"
        "    data = b''\n"
        "print('data' if data else 'eof')\n"
    )
    out = subprocess.run(
        [
            setpriv,
            "--reuid",
            str(NOBODY),
            "--regid",
            str(NOBODY),
            "--clear-groups",
            python,
            "-c",
            script,
            path,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture
def open_dir():
    """A directory every uid may enter (pytest's own tmp_path is 0700 under /tmp)."""
    path = tempfile.mkdtemp(prefix="bridgefs-sec-")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_unix_socket_refuses_other_uids(tree, open_dir, serve):
    share, _ = tree
    tmp_path = open_dir
    default = tmp_path / "default.sock"
    serve("--listen", f"unix:{default}", shares={"s": str(share)})
    assert _as_nobody_connect(str(default)) == "EACCES"

    others = tmp_path / "others.sock"
    server = serve("--listen", f"unix:{others}", "--allow-uid", "4242", shares={"s": str(share)})
    assert os.stat(others).st_mode & 0o777 == 0o666  # the server's own check decides
    assert _as_nobody_connect(str(others)) == "eof"
    assert "uid 65534 is not allowed" in server.log()

    allowed = tmp_path / "allowed.sock"
    serve("--listen", f"unix:{allowed}", "--allow-uid", str(NOBODY), shares={"s": str(share)})
    assert _as_nobody_connect(str(allowed)) == "data"
    # And the server's own uid still gets in through the relay.
    client = Raw(f"unix:{allowed}", "s", None)
    try:
        assert client.read_file(b"file") == b"inside\n"
    finally:
        client.close()


def test_the_vsock_relay_refuses_before_relaying(tree, tmp_path, serve, token_file):
    """The relay in front of a vsock listener, run on a unix socket pair: a peer the CID check
    refuses is closed unread, and one it lets through still needs the token."""
    share, _ = tree
    server = serve(
        "--listen",
        f"unix:{tmp_path / 'inner.sock'}",
        "--token-file",
        str(token_file),
        shares={"s": str(share)},
    )
    inner = server.address.split(":", 1)[1]
    refused_at = str(tmp_path / "refused.sock")
    check = cid_check({3})
    # accept() on AF_UNIX names no CID: the check is shown the one a VM of CID 5 would have.
    with Forwarder(
        socket.AF_UNIX,
        refused_at,
        socket.AF_UNIX,
        inner,
        peer_check=lambda sock, _addr: check(sock, (5, 1234)),
    ) as fwd:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(refused_at)
            try:
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                data = s.recv(100)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            assert data == b""
        assert check(None, (3, 1234)) is None and fwd.peer_check is not None
    relayed_at = str(tmp_path / "relayed.sock")
    with Forwarder(socket.AF_UNIX, relayed_at, socket.AF_UNIX, inner, peer_check=uid_check(())):
        _refused(f"unix:{relayed_at}", "s", None)
        client = Raw(f"unix:{relayed_at}", "s", read_token(token_file))
        try:
            assert client.read_file(b"file") == b"inside\n"
        finally:
            client.close()


def test_refused_mount_fails_with_eacces(tree, tmp_path, serve, token_file, wrong_token_file):
    share, _ = tree
    server = serve(
        "--listen", "tcp:127.0.0.1:0", "--token-file", str(token_file), shares={"s": str(share)}
    )
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for extra in ([], ["--token-file", str(wrong_token_file)]):
        proc = run_cli(["mount", server.address, "s", str(mnt), "--foreground", *extra])
        assert proc.returncode != 0
        assert "refused this client" in proc.stderr, proc.stderr
        assert os.strerror(errno.EACCES) in proc.stderr or "EACCES" in proc.stderr
        assert not os.path.ismount(mnt)


def test_hold_stream_ends_the_session_when_the_channel_closes(tree, tmp_path, serve):
    """A client that vanishes without Goodbye frees its session at once, not at the idle
    timeout: sessions past the bound are refused, and free again once the channel is gone."""
    from bridgefs.client.session import ServerSession
    from bridgefs.client.writes import WriteBehind
    from bridgefs.fuse.filesystem import FsError

    share, _ = tree
    server = serve(
        "--listen",
        f"unix:{tmp_path / 's.sock'}",
        "--max-client-sessions",
        "2",
        shares={"s": str(share)},
    )
    first = [ServerSession(server.address, "s", WriteBehind()) for _ in range(2)]
    with pytest.raises(FsError) as info:
        ServerSession(server.address, "s", WriteBehind())
    assert info.value.errno == errno.EUSERS
    for session in first:  # no Goodbye: the channel simply closes
        session.counts.close()
        session._conn.close()
    done = threading.Event()

    def attach() -> bool:
        try:
            ServerSession(server.address, "s", WriteBehind()).close(lambda: None)
        except FsError:
            return False
        done.set()
        return True

    from waiting import wait_until

    wait_until(attach, what="a session is free again after its channel closed")
    assert "channel closed" in server.log()


def test_a_mount_with_the_token_reads_the_share(tree, tmp_path, serve, token_file):
    from mounting import remote_mount

    share, _ = tree
    server = serve(
        "--listen", "tcp:127.0.0.1:0", "--token-file", str(token_file), shares={"s": str(share)}
    )
    mnt = tmp_path / "mnt"
    with remote_mount(server.address, "s", mnt, "--token-file", str(token_file)):
        assert (mnt / "file").read_bytes() == b"inside\n"
        (mnt / "new").write_bytes(b"through the mount\n")
    assert (share / "new").read_bytes() == b"through the mount\n"


def test_a_client_at_its_in_flight_bound_waits_instead_of_failing(tree, tmp_path, serve):
    """The bound on calls in flight is back-pressure: the client sends a refused call again."""
    from concurrent.futures import ThreadPoolExecutor

    from bridgefs.client.session import ServerSession
    from bridgefs.client.writes import WriteBehind

    share, _ = tree
    for i in range(2000):
        (share / f"f{i:04d}").write_bytes(b"")
    server = serve(
        "--listen",
        f"unix:{tmp_path / 's.sock'}",
        "--max-client-inflight",
        "1",
        shares={"s": str(share)},
    )
    session = ServerSession(server.address, "s", WriteBehind())
    try:

        def listing(_: int) -> int:
            reply = session.call(
                session.stub.ListDir, pb.ReadDirRequest(handle=1, max_entries=4096)
            )
            return len(reply.entries)

        with ThreadPoolExecutor(16) as pool:
            counts = list(pool.map(listing, range(64)))
    finally:
        session.close(lambda: None)
    assert all(c == 2003 for c in counts)  # ".", "..", "file" and the 2000
    assert "1 calls in flight" in server.log()  # the bound was met, and nobody saw it
