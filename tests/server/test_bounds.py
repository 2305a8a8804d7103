"""What one client may hold is bounded, and past a bound it gets a clear errno."""

import errno
import logging
import os

import pytest
from waiting import wait_until

from bridgefs.rpc import PROTOCOL_VERSION, pb
from bridgefs.server import Limits
from bridgefs.server.sessions import Session
from bridgefs.server.shares import Share
from serverkit import Raw


def _files(share, n):
    for i in range(n):
        (share / f"f{i}").write_bytes(b"%d" % i)


def _connect(server, share="s"):
    return Raw(server.addresses[0], share)


def test_node_bound(tree, start_server, caplog):
    share, _ = tree
    _files(share, 10)
    server = start_server({"s": (str(share), False)}, Limits(max_nodes=4))
    client = _connect(server)
    handles = [client.handle(1, b"f%d" % i) for i in range(3)]  # root + 3 = 4 nodes
    assert client.handle(1, b"f0") == handles[0]  # the same inode takes no new slot
    with caplog.at_level(logging.WARNING, logger="bridgefs.server"):
        assert client.Lookup(parent=1, name=b"f3").errno == errno.ENFILE
        assert client.MkDir(parent=1, name=b"d2", mode=0o755).errno == errno.ENFILE
    assert any("4 nodes" in r.message for r in caplog.records)
    assert client.Forget(items=[{"handle": handles[1], "count": 1}]).errno == 0
    assert client.Lookup(parent=1, name=b"f3").errno == 0
    client.close()


def test_readdirplus_stops_at_the_node_bound(tree, start_server):
    share, _ = tree
    _files(share, 10)
    server = start_server({"s": (str(share), False)}, Limits(max_nodes=5))
    client = _connect(server)
    dh = client.OpenDir(handle=1).fh
    reply = client.ReadDir(handle=1, fh=dh, plus=True, max_entries=100)
    assert reply.errno == 0 and not reply.eof
    with_entries = [e for e in reply.entries if e.HasField("entry")]
    assert len(with_entries) == 4
    nxt = client.ReadDir(handle=1, fh=dh, plus=True, offset=reply.entries[-1].offset)
    assert nxt.errno == errno.ENFILE
    client.Forget(items=[{"handle": e.entry.handle, "count": 1} for e in with_entries])
    nxt = client.ReadDir(handle=1, fh=dh, plus=True, offset=reply.entries[-1].offset)
    assert nxt.errno == 0 and len(nxt.entries) == 4
    client.close()


def test_open_bound(tree, start_server):
    share, _ = tree
    server = start_server({"s": (str(share), False)}, Limits(max_open=2))
    client = _connect(server)
    file_h = client.handle(1, b"file")
    first = client.Open(handle=file_h, flags=os.O_RDONLY)
    assert first.errno == 0
    assert client.OpenDir(handle=1).errno == 0
    assert client.Open(handle=file_h, flags=os.O_RDONLY).errno == errno.EMFILE
    assert client.OpenDir(handle=1).errno == errno.EMFILE
    assert client.Create(parent=1, name=b"c", mode=0o644, flags=os.O_RDWR).errno == errno.EMFILE
    assert not (share / "c").exists()
    assert client.Release(handle=file_h, fh=first.fh).errno == 0
    assert client.Open(handle=file_h, flags=os.O_RDONLY).errno == 0
    client.close()


def test_session_bound(tree, start_server):
    share, _ = tree
    server = start_server({"s": (str(share), False)}, Limits(max_sessions=2))
    a, b = _connect(server), _connect(server)
    reply = a.stub.Handshake(
        pb.HandshakeRequest(protocol_version=PROTOCOL_VERSION, share="s"), timeout=10
    )
    assert reply.errno == errno.EUSERS
    assert b.Goodbye().errno == 0
    assert b.GetAttr(handle=1).errno == errno.ESTALE
    c = _connect(server)
    assert c.GetAttr(handle=1).errno == 0
    for client in (a, b, c):
        client.close()


def test_inflight_bound(tree):
    share, _ = tree
    root = Share("s", str(share), False).open()
    session = Session("t" * 32, root, Limits(max_inflight=2), "peer", "test")
    session.enter()
    session.enter()
    with pytest.raises(OSError) as info:
        session.enter()
    assert info.value.errno == errno.EAGAIN
    session.exit()
    session.enter()
    session.close()
    with pytest.raises(OSError) as info:
        session.enter()
    assert info.value.errno == errno.ESTALE
    root.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_idle_sessions_are_reaped_and_their_fds_closed(tree, start_server):
    share, _ = tree
    _files(share, 20)
    # Idle past 2 s: opening 20 files never takes that long, however loaded the machine.
    server = start_server({"s": (str(share), False)}, Limits(idle_timeout=2))
    baseline = _open_fds()
    client = _connect(server)
    for i in range(20):
        h = client.handle(1, b"f%d" % i)
        assert client.Open(handle=h, flags=os.O_RDONLY).errno == 0
    assert _open_fds() >= baseline + 40
    wait_until(lambda: not len(server.registry), what="the idle session is reaped")
    assert client.GetAttr(handle=1).errno == errno.ESTALE
    assert _open_fds() <= baseline + 2  # the test's own channel may hold a socket or two
    client.close()


def test_goodbye_closes_everything(tree, start_server):
    share, _ = tree
    _files(share, 5)
    server = start_server({"s": (str(share), False)})
    client = _connect(server)
    baseline = _open_fds()
    for i in range(5):
        h = client.handle(1, b"f%d" % i)
        client.Open(handle=h, flags=os.O_RDONLY)
    client.OpenDir(handle=1)
    assert _open_fds() >= baseline + 11
    assert client.Goodbye().errno == 0
    assert _open_fds() <= baseline
    client.close()


def test_a_session_outlives_its_hold_stream_by_the_grace_period(tree):
    """A session whose client's hold stream ended is ended once the grace period passes; one
    whose stream was opened again meanwhile (a connection back after a break) is kept, and one
    that never opened a stream is left to the idle timeout."""
    from bridgefs.server.sessions import SessionRegistry

    share, _ = tree
    root = Share("s", str(share), False).open()
    registry = SessionRegistry(Limits(hold_grace=5.0, idle_timeout=1000.0))
    gone, back, never = (registry.create(root, f"peer{i}", "test") for i in range(3))
    for session in (gone, back):
        session.hold_opened()
        session.hold_closed(now=100.0)
    back.hold_opened()  # the client's connection came back
    assert registry.reap(now=104.0) == []
    assert registry.reap(now=106.0) == [gone]
    assert gone.closed and not back.closed and not never.closed
    assert registry.get(back.token) is back and registry.get(never.token) is never
    registry.close_all()
    root.close()
