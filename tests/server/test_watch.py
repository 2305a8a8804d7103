"""Watch: host-side changes stream to every watching session but the one that made them.

A real server, real files, real gRPC streams; each stream is read by a thread into a queue and
polled with a timeout."""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import queue
import shutil
import stat
import threading
import time

import grpc
import pytest
from waiting import wait_until
from watchdog.observers.polling import PollingObserver
from watchdog.utils import BaseThread

from bridgefs.rpc import SESSION_KEY, pb
from bridgefs.server import Limits
from bridgefs.server.changes import OVERFLOW_CHANGE, QUEUE_LIMIT
from serverkit import Raw

C = pb.Change
TIMEOUT = 60.0  # only how long a failure takes: a loaded machine must never reach it
_markers = itertools.count()


class Stream:
    """One Watch stream, pumped by a thread; ``changes`` holds everything received so far."""

    def __init__(self, client: Raw):
        self.call = client.stub.Watch(pb.WatchRequest(), metadata=client.metadata, timeout=300)
        self.changes: list = []
        self.ended = threading.Event()
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        try:
            for change in self.call:
                self._queue.put(change)
        except grpc.RpcError as exc:
            self._queue.put(exc)
        finally:
            self.ended.set()
            self._queue.put(None)

    def next(self, timeout: float = TIMEOUT):
        item = self._queue.get(timeout=timeout)
        if isinstance(item, Exception):
            raise item
        if item is not None:
            self.changes.append(item)
        return item

    def wait_for(self, kind, path=None, timeout: float = TIMEOUT) -> list:
        """Changes up to and including the first of ``kind`` (at ``path``); fails on timeout."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                change = self.next(max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {C.Kind.Name(kind)} {path} within {timeout}s; got {[show(c) for c in got]}"
                ) from None
            assert change is not None, f"stream ended waiting for {path}: {[show(c) for c in got]}"
            got.append(change)
            if change.kind == kind and (path is None or tuple(change.path) == parts(path)):
                return got

    def quiet(self, share) -> list:
        """Whatever arrives before a marker made now comes and goes (changes come in order).

        The marker is a directory of the share root: no close event to race with."""
        name = f"quiet-{next(_markers)}"
        os.mkdir(share / name)
        got = self.wait_for(C.CREATED, name)
        os.rmdir(share / name)
        after = self.wait_for(C.DELETED, name)
        assert [show(c) for c in after] == [("DELETED", name, "", True)], after
        return got[:-1]

    def cancel(self):
        self.call.cancel()
        self._thread.join(TIMEOUT)


def parts(path) -> tuple:
    return tuple(os.fsencode(p) for p in path.split("/") if p) if isinstance(path, str) else path


def show(c) -> tuple:
    return (C.Kind.Name(c.kind), b"/".join(c.path).decode(), b"/".join(c.dest).decode(), c.is_dir)


def unique(items) -> list:
    return list(dict.fromkeys(items))


def kinds(changes) -> list:
    return [show(c)[:2] for c in changes]


def watchdog_threads() -> list:
    return [t for t in threading.enumerate() if isinstance(t, BaseThread)]


def no_watchdog_threads(timeout: float = TIMEOUT) -> bool:
    """Wait for every observer to be stopped and joined (a cancelled stream lets go async)."""
    wait_until(lambda: not watchdog_threads(), timeout, what="every observer stops")
    return True


@pytest.fixture
def watch(raw):
    streams = []

    def open_stream(client: Raw) -> Stream:
        stream = Stream(client)
        streams.append(stream)
        first = stream.next()
        assert first.kind == C.WATCHING and first.errno == 0 and first.seq == 1, first
        return stream

    yield open_stream
    for stream in streams:
        stream.cancel()


def test_host_changes_three_levels_deep(tree, raw, watch):
    share, _ = tree
    stream = watch(raw())
    deep = share / "a" / "b" / "c"
    os.makedirs(deep)
    got = stream.wait_for(C.CREATED, "a/b/c")
    # A directory made before its parent's watch was in place is reported from a scan of the
    # parent; one made just as the watch lands can be reported by both.
    assert unique([show(c) for c in got]) == [
        ("CREATED", "a", "", True),
        ("CREATED", "a/b", "", True),
        ("CREATED", "a/b/c", "", True),
    ]
    stream.quiet(share)

    (deep / "f").write_bytes(b"one")  # one write + close: no second MODIFIED
    got = stream.wait_for(C.MODIFIED, "a/b/c/f") + stream.quiet(share)
    assert [show(c) for c in got] == [
        ("CREATED", "a/b/c/f", "", False),
        ("MODIFIED", "a/b/c/f", "", False),
    ]

    with open(deep / "f", "ab") as f:
        f.write(b"two")
    assert kinds(stream.wait_for(C.MODIFIED, "a/b/c/f") + stream.quiet(share)) == [
        ("MODIFIED", "a/b/c/f")
    ]

    attribute_changes = [
        lambda p: os.chmod(p, 0o600),
        lambda p: os.utime(p, (1, 1)),
        lambda p: os.setxattr(p, "user.k", b"v"),
    ]
    if os.geteuid() == 0:
        attribute_changes.append(lambda p: os.chown(p, 1234, 1234))
    for change_attr in attribute_changes:
        change_attr(deep / "f")
        got = stream.wait_for(C.ATTRIB, "a/b/c/f")
        assert [show(c) for c in got] == [("ATTRIB", "a/b/c/f", "", False)]

    os.chmod(deep, 0o700)
    assert [show(c) for c in stream.wait_for(C.ATTRIB, "a/b/c")] == [("ATTRIB", "a/b/c", "", True)]

    os.rename(deep / "f", deep / "g")
    assert [show(c) for c in stream.wait_for(C.MOVED)] == [("MOVED", "a/b/c/f", "a/b/c/g", False)]
    os.rename(deep / "g", share / "a" / "g")
    assert [show(c) for c in stream.wait_for(C.MOVED)] == [("MOVED", "a/b/c/g", "a/g", False)]

    os.mkdir(deep / "d")
    assert [show(c) for c in stream.wait_for(C.CREATED)] == [("CREATED", "a/b/c/d", "", True)]
    os.rmdir(deep / "d")
    assert [show(c) for c in stream.wait_for(C.DELETED)] == [("DELETED", "a/b/c/d", "", True)]
    os.unlink(share / "a" / "g")
    assert [show(c) for c in stream.wait_for(C.DELETED)] == [("DELETED", "a/g", "", False)]

    os.rename(share / "a" / "b", share / "a" / "B")  # the subtree moves with it: one change
    assert [show(c) for c in stream.wait_for(C.MOVED) + stream.quiet(share)] == [
        ("MOVED", "a/b", "a/B", True)
    ]

    seqs = [c.seq for c in stream.changes]
    assert seqs == list(range(1, len(seqs) + 1))
    for c in stream.changes:
        for p in list(c.path) + list(c.dest):
            assert p and b"/" not in p and p not in (b".", b"..")


def test_moves_across_the_share_boundary(tree, raw, watch):
    share, outside = tree
    stream = watch(raw())
    os.rename(outside / "secret", share / "dir" / "in")
    assert [show(c) for c in stream.wait_for(C.CREATED)] == [("CREATED", "dir/in", "", False)]
    os.rename(share / "dir" / "in", outside / "secret")
    assert [show(c) for c in stream.wait_for(C.DELETED)] == [("DELETED", "dir/in", "", False)]
    os.chmod(share, 0o755)
    assert [show(c) for c in stream.wait_for(C.ATTRIB, ())] == [("ATTRIB", "", "", True)]


def test_read_only_share_can_be_watched(tree, raw, watch):
    share, _ = tree
    stream = watch(raw("ro"))
    (share / "new").write_bytes(b"x")
    stream.wait_for(C.CREATED, "new")


def _act_through_server(client: Raw):
    """Every kind of change a client can make; returns the paths they touch."""
    d = client.MkDir(parent=1, name=b"d", mode=0o755).entry.handle
    created = client.Create(parent=d, name=b"f", mode=0o644, flags=os.O_RDWR)
    f, fh = created.entry.handle, created.fh
    assert client.Write(handle=f, fh=fh, offset=0, data=b"hello").written == 5
    assert client.Fallocate(handle=f, fh=fh, offset=0, length=8192).errno == 0
    assert (
        client.CopyFileRange(
            handle_in=f, fh_in=fh, handle_out=f, fh_out=fh, offset_out=100, length=5
        ).copied
        == 5
    )
    assert client.Flush(handle=f, fh=fh).errno == 0
    assert client.Release(handle=f, fh=fh).errno == 0
    assert client.SetAttr(handle=f, mode=0o600).errno == 0
    assert client.SetAttr(handle=f, size=3).errno == 0
    assert client.SetAttr(handle=f, mtime_now=True, atime_now=True).errno == 0
    assert client.SetXattr(handle=f, name=b"user.a", value=b"1").errno == 0
    assert client.RemoveXattr(handle=f, name=b"user.a").errno == 0
    assert client.Link(handle=f, new_parent=1, new_name=b"hard").errno == 0
    assert client.Symlink(parent=d, name=b"ln", target=b"f").errno == 0
    assert client.MkNod(parent=d, name=b"fifo", mode=stat.S_IFIFO | 0o644).errno == 0
    assert client.Rename(parent=d, name=b"f", new_parent=1, new_name=b"g").errno == 0
    opened = client.Open(handle=f, flags=os.O_WRONLY | os.O_TRUNC)
    assert opened.errno == 0 and client.Release(handle=f, fh=opened.fh).errno == 0
    for name in (b"ln", b"fifo"):
        assert client.Unlink(parent=d, name=name).errno == 0
    assert client.Unlink(parent=1, name=b"hard").errno == 0
    assert client.Unlink(parent=1, name=b"g").errno == 0
    assert client.RmDir(parent=1, name=b"d").errno == 0


def test_own_changes_are_not_echoed_but_others_see_them(tree, raw, watch):
    share, _ = tree
    a, b = raw(), raw()
    stream_a, stream_b = watch(a), watch(b)
    _act_through_server(a)
    (share / "marker").write_bytes(b"")  # changes arrive in order: after this one, all are in
    seen_a = stream_a.wait_for(C.CREATED, "marker")
    seen_b = stream_b.wait_for(C.CREATED, "marker")
    assert [show(c) for c in seen_a] == [("CREATED", "marker", "", False)]
    got = {show(c) for c in seen_b}
    for want in [
        ("CREATED", "d", "", True),
        ("CREATED", "d/f", "", False),
        ("MODIFIED", "d/f", "", False),
        ("ATTRIB", "d/f", "", False),
        ("CREATED", "hard", "", False),
        ("CREATED", "d/ln", "", False),
        ("CREATED", "d/fifo", "", False),
        ("MOVED", "d/f", "g", False),
        ("DELETED", "d/ln", "", False),
        ("DELETED", "g", "", False),
        ("DELETED", "d", "", True),
    ]:
        assert want in got, (want, sorted(got))


def test_host_edit_right_after_own_change_is_not_swallowed(tree, raw, watch):
    share, _ = tree
    a = raw()
    stream = watch(a)
    f = a.handle(1, b"file")
    assert a.SetAttr(handle=f, mode=0o640).errno == 0
    # At once: in the same clock tick the new mode alone tells the host's change apart.
    os.chmod(share / "file", 0o604)
    with open(share / "file", "ab") as out:
        out.write(b"host")
    got = stream.wait_for(C.MODIFIED, "file")
    assert ("ATTRIB", "file", "", False) in [show(c) for c in got]


def test_burst_of_host_creations(tree, start_server):
    share, _ = tree
    server = start_server({"s": (str(share), False)})
    watcher = Raw(server.addresses[0], "s")
    other = Raw(server.addresses[0], "s")
    stream = Stream(watcher)
    assert stream.next().kind == C.WATCHING
    burst = share / "burst"
    burst.mkdir()
    stream.wait_for(C.CREATED, "burst")
    count = 5000
    slowest = []

    def make():
        for i in range(count):
            with open(burst / f"f{i:05d}", "wb"):
                pass

    maker = threading.Thread(target=make)
    maker.start()
    while maker.is_alive():  # the server keeps answering other sessions meanwhile
        t0 = time.monotonic()
        assert other.GetAttr(handle=1).errno == 0
        assert other.Lookup(parent=1, name=b"burst").errno == 0
        slowest.append(time.monotonic() - t0)
        time.sleep(0.005)
    maker.join()
    names, overflow = set(), False
    deadline = time.monotonic() + 60
    while len(names) < count and not overflow and time.monotonic() < deadline:
        change = stream.next(timeout=30)
        assert change is not None
        if change.kind == C.OVERFLOW:
            overflow = True
        elif change.kind == C.CREATED and change.path[:1] == [b"burst"]:
            names.add(change.path[1])
    assert overflow or len(names) == count, (len(names), overflow)
    assert max(slowest) < 30, max(slowest)  # answered all along, never stuck behind the burst
    sub = server.watches.subscription(watcher.hello.session)
    assert sub.high_water <= QUEUE_LIMIT
    stream.cancel()
    watcher.close()
    other.close()


def test_slow_reader_gets_one_overflow_not_unbounded_memory(tree, start_server):
    share, _ = tree
    server = start_server({"s": (str(share), False)})
    server.watches.queue_limit = 50
    client = Raw(server.addresses[0], "s")
    call = client.stub.Watch(pb.WatchRequest(), metadata=client.metadata, timeout=60)
    assert next(call).kind == C.WATCHING
    sub = server.watches.subscription(client.hello.session)
    pushed = set()  # the paths the watcher queued, read or not
    overflowed = threading.Event()
    push = sub.push

    def recording(change):
        push(change)
        pushed.add(change[1])
        with sub._cond:
            if sub._queue and sub._queue[-1] is OVERFLOW_CHANGE:
                overflowed.set()

    sub.push = recording
    # While nobody reads: gRPC buffers some, then the queue fills and passes its bound.  Made
    # until the watcher got there, however far behind it is.
    for i in range(100_000):
        (share / f"n{i}").mkdir()
        if overflowed.is_set():
            break
    assert overflowed.is_set()
    last = "last"
    (share / last).mkdir()
    # Read only once the watcher queued the last change: reading first would make room.
    wait_until(lambda: (last.encode(),) in pushed, what=f"the change of {last} queued")
    received = []
    for change in call:
        received.append(change)
        if change.kind == C.CREATED and change.path == [last.encode()]:
            break
    assert sub.high_water <= 50
    assert [c.kind for c in received].count(C.OVERFLOW) >= 1
    assert [c.seq for c in received] == list(range(2, len(received) + 2))
    call.cancel()
    client.close()


def test_watchdog_overflow_becomes_overflow(tree, raw, watch):
    share, _ = tree
    stream = watch(raw())
    # What watchdog logs when the kernel's inotify queue overflowed (it sends no event).
    logging.getLogger("watchdog.observers.inotify").warning(
        "Inotify queue overflowed; reconciling recursive watches below %r", os.fsencode(share)
    )
    assert [show(c) for c in stream.wait_for(C.OVERFLOW)] == [("OVERFLOW", "", "", False)]
    (share / "after").mkdir()  # (a directory: no close event to race with what follows)
    stream.wait_for(C.CREATED, "after")  # the stream goes on
    # The record that names no path could be about any watched share: it is sent to all.
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    stream.wait_for(C.OVERFLOW)
    logging.getLogger("watchdog.observers.inotify").warning(
        "Inotify queue overflowed; reconciling recursive watches below %r", b"/elsewhere"
    )
    (share / "later").mkdir()
    assert [show(c) for c in stream.wait_for(C.CREATED, "later")] == [
        ("CREATED", "later", "", True)
    ]


def test_observer_stops_with_the_last_watcher(tree, server, raw):
    share, _ = tree
    assert no_watchdog_threads()
    a, b, c = raw(), raw(), raw()
    sa, sb, sc = Stream(a), Stream(b), Stream(c)
    for s in (sa, sb, sc):
        assert s.next().kind == C.WATCHING
    assert server.watches.watched() == ["s"] and watchdog_threads()
    sa.cancel()
    assert b.Goodbye().errno == 0
    assert sb.next() is None  # the session ended: so did its stream
    (share / "still").write_bytes(b"")
    sc.wait_for(C.CREATED, "still")
    assert watchdog_threads()
    sc.cancel()
    wait_until(
        lambda: not watchdog_threads() and not server.watches.watched(),
        TIMEOUT,
        what="the observer stops",
    )
    assert all(server.watches.subscription(x.hello.session) is None for x in (a, b, c))


def test_reaped_session_and_server_stop_end_streams(tree, start_server):
    share, _ = tree
    # Pings every 0.1 s keep a session whose idle limit is 5 s alive however loaded the machine.
    server = start_server({"s": (str(share), False)}, limits=Limits(idle_timeout=5))
    idle, busy = Raw(server.addresses[0], "s"), Raw(server.addresses[0], "s")
    s_idle, s_busy = Stream(idle), Stream(busy)
    assert s_idle.next().kind == C.WATCHING and s_busy.next().kind == C.WATCHING

    def idle_reaped():
        assert busy.Ping().errno == 0  # a watch alone does not keep a silent session alive
        return s_idle.ended.is_set()

    wait_until(idle_reaped, every=0.1, what="the silent session is reaped")
    assert not s_busy.ended.is_set()
    server.stop(5)
    assert s_busy.ended.wait(TIMEOUT)
    assert no_watchdog_threads()
    idle.close()
    busy.close()


def test_unknown_session_gets_estale(raw):
    client = raw()
    client.metadata = ((SESSION_KEY, "0" * 32),)
    stream = Stream(client)
    first = stream.next()
    assert first.errno == errno.ESTALE
    assert stream.next() is None


def test_missing_share_root_gets_an_errno(tmp_path, start_server):
    root = tmp_path / "gone"
    root.mkdir()
    server = start_server({"s": (str(root), False)})
    client = Raw(server.addresses[0], "s")
    shutil.rmtree(root)
    stream = Stream(client)
    first = stream.next()
    assert first.errno == errno.ENOENT, first
    assert stream.next() is None
    assert no_watchdog_threads()
    client.close()


def test_removing_the_share_root_ends_the_watch(tmp_path, start_server):
    root = tmp_path / "doomed"
    (root / "sub").mkdir(parents=True)
    server = start_server({"s": (str(root), False)})
    client = Raw(server.addresses[0], "s")
    stream = Stream(client)
    assert stream.next().kind == C.WATCHING
    shutil.rmtree(root)
    got = stream.wait_for(C.OVERFLOW)
    assert ("DELETED", "sub", "", True) in [show(c) for c in got]
    assert stream.next() is None
    assert no_watchdog_threads()
    assert Stream(client).next().errno == errno.ENOENT  # watching it again says why not
    client.close()


def test_a_new_stream_replaces_the_old_one(tree, raw, watch):
    share, _ = tree
    client = raw()
    first = Stream(client)
    assert first.next().kind == C.WATCHING
    second = watch(client)
    assert first.next() is None
    (share / "x").write_bytes(b"")
    second.wait_for(C.CREATED, "x")


def test_portable_to_the_polling_observer(tree, raw, server, watch):
    share, _ = tree
    server.watches.observer_factory = functools.partial(PollingObserver, timeout=0.1)
    stream = watch(raw())
    (share / "p").write_bytes(b"1")
    stream.wait_for(C.CREATED, "p")
    (share / "p").write_bytes(b"22")  # another size: the next poll tells it apart
    stream.wait_for(C.MODIFIED, "p")
    os.chmod(share / "p", 0o600)
    stream.wait_for(C.ATTRIB, "p")
    os.unlink(share / "p")
    stream.wait_for(C.DELETED, "p")
