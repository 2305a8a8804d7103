"""Unit tests of the Watch building blocks: echo suppression, the bounded stream queue, and the
translation of watchdog events (real watchdog event objects, real files)."""

from __future__ import annotations

import os
import time

import pytest
from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)
from watchdog.observers import Observer

from bridgefs.rpc import pb
from bridgefs.server.changes import CLOSED, GONE, OVERFLOW_CHANGE, Subscription, translate
from bridgefs.server.echo import EchoLog, Probe, key_of, stamp_of

C = pb.Change


@pytest.fixture
def echo():
    log = EchoLog()
    log.watching(True)
    return log


@pytest.fixture
def d(tmp_path):
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    yield tmp_path, fd, key_of(os.stat(tmp_path))
    os.close(fd)


def node_probe(kind, path, parent_key) -> Probe:
    st = os.lstat(path)
    return Probe(kind, ((parent_key, os.fsencode(path.name)),), (key_of(st), stamp_of(st)))


def test_an_entry_change_is_an_echo_once(echo, d):
    root, fd, key = d
    with echo.added(fd, b"x"):
        os.mkdir(root / "x")
    created = Probe(C.CREATED, ((key, b"x"),))
    assert not echo.is_echo(Probe(C.DELETED, ((key, b"x"),)))  # not the change it made
    assert not echo.is_echo(Probe(C.CREATED, ((key, b"y"),)))  # nor that name
    assert echo.is_echo(created)
    assert not echo.is_echo(created)  # a host program recreating it later is news
    with echo.removed(fd, b"x"):
        os.rmdir(root / "x")
    assert echo.is_echo(Probe(C.DELETED, ((key, b"x"),)))


def test_a_failed_change_expects_nothing(echo, d):
    root, fd, key = d
    os.mkdir(root / "x")
    with pytest.raises(FileExistsError), echo.added(fd, b"x"):
        os.mkdir(root / "x")
    assert not echo.is_echo(Probe(C.CREATED, ((key, b"x"),)))


def test_moves_and_exchanges(echo, d):
    root, fd, key = d
    (root / "a").write_bytes(b"")
    (root / "b").write_bytes(b"")
    with echo.moved(fd, b"a", fd, b"c", False):
        os.rename(root / "a", root / "c")
    assert echo.is_echo(Probe(C.MOVED, ((key, b"a"), (key, b"c"))))
    assert not echo.is_echo(Probe(C.MOVED, ((key, b"a"), (key, b"c"))))
    # An unpaired move is reported as DELETED + CREATED: both halves are echoes too.
    with echo.moved(fd, b"c", fd, b"e", False):
        os.rename(root / "c", root / "e")
    assert echo.is_echo(Probe(C.DELETED, ((key, b"c"),)))
    assert echo.is_echo(Probe(C.CREATED, ((key, b"e"),)))
    with echo.moved(fd, b"b", fd, b"e", True):  # RENAME_EXCHANGE: reported as two moves
        pass
    assert echo.is_echo(Probe(C.MOVED, ((key, b"b"), (key, b"e"))))
    assert echo.is_echo(Probe(C.MOVED, ((key, b"e"), (key, b"b"))))
    assert not echo.is_echo(Probe(C.MOVED, ((key, b"e"), (key, b"b"))))


def test_a_node_change_is_an_echo_until_the_host_changes_it(echo, d):
    root, fd, key = d
    f = root / "f"
    f.write_bytes(b"")
    nfd = os.open(f, os.O_PATH)
    try:
        with echo.node(nfd):
            os.chmod(f, 0o600)
            assert not echo.is_echo(Probe(C.ATTRIB, (), ((0, 0), None)))  # another node
            assert echo.is_echo(Probe(C.ATTRIB, (), (key_of(os.lstat(f)), "any")))  # running
        assert echo.is_echo(node_probe(C.ATTRIB, f, key))
        assert echo.is_echo(node_probe(C.ATTRIB, f, key))  # an attribute change reports twice
        os.chmod(f, 0o604)  # the host, a moment later
        assert not echo.is_echo(node_probe(C.ATTRIB, f, key))
    finally:
        os.close(nfd)


def test_entry_changes_record_the_node_left_under_the_name(echo, d):
    root, fd, key = d
    with echo.added(fd, b"f"):
        os.close(os.open(root / "f", os.O_CREAT | os.O_WRONLY, 0o600))
    assert echo.is_echo(node_probe(C.MODIFIED, root / "f", key))
    with open(root / "f", "ab") as out:
        out.write(b"host")
    assert not echo.is_echo(node_probe(C.MODIFIED, root / "f", key))


def test_a_change_of_a_gone_node_falls_back_to_its_name(echo, d):
    root, fd, key = d
    (root / "g").write_bytes(b"")
    with echo.removed(fd, b"g"):
        os.unlink(root / "g")
    assert echo.is_echo(Probe(C.ATTRIB, ((key, b"g"),), None))
    assert not echo.is_echo(Probe(C.ATTRIB, ((key, b"h"),), None))


def test_a_change_in_a_directory_gone_since_matches_by_name(echo, d):
    root, fd, key = d
    with echo.added(fd, b"x"):
        os.mkdir(root / "x")
    # The watcher looks only after the directory holding "x" was removed: no parent key.
    assert not echo.is_echo(Probe(C.CREATED, ((None, b"y"),)))
    assert echo.is_echo(Probe(C.CREATED, ((None, b"x"),)))
    assert not echo.is_echo(Probe(C.CREATED, ((None, b"x"),)))  # used up all the same


def test_only_closing_a_writable_file_is_recorded(echo, d):
    root, fd, key = d
    (root / "r").write_bytes(b"")
    rfd = os.open(root / "r", os.O_RDONLY)
    with echo.closing(rfd):
        pass
    assert len(echo) == 0
    wfd = os.open(root / "r", os.O_WRONLY)
    with echo.closing(wfd):
        pass
    os.close(rfd)
    os.close(wfd)
    assert echo.is_echo(node_probe(C.MODIFIED, root / "r", key))


def test_nothing_expires_by_time(echo, d):
    root, fd, key = d
    with echo.added(fd, b"x"):
        os.mkdir(root / "x")
    nfd = os.open(root / "x", os.O_PATH)
    with echo.node(nfd):
        os.chmod(root / "x", 0o700)
    os.close(nfd)
    # However late the watcher looks: the expectation is there, and the node in its state.
    assert echo.is_echo(node_probe(C.CREATED, root / "x", key))
    assert echo.is_echo(node_probe(C.ATTRIB, root / "x", key))


def test_nothing_is_recorded_without_a_watch(d):
    root, fd, key = d
    log = EchoLog()
    with log.added(fd, b"x"):
        os.mkdir(root / "x")
    assert len(log) == 0 and not log
    log.watching(True)
    with log.added(fd, b"y"):
        os.mkdir(root / "y")
    assert log
    log.watching(False)
    assert len(log) == 0


def test_records_are_bounded(d):
    root, fd, key = d
    log = EchoLog(limit=64)
    log.watching(True)
    for i in range(1000):
        with log.added(fd, b"n%d" % i):
            pass
    assert len(log) <= 64
    assert log.is_echo(Probe(C.CREATED, ((key, b"n999"),)))  # the newest are kept


def test_bad_names_are_never_resolved(echo, d, tmp_path):
    root, fd, key = d
    with echo.added(fd, b"../escape"):
        pass
    # The expectation and the directory's own stamp: no stat of a path through "..".
    assert len(echo._names) == 1 and set(echo._nodes) == {key}


# --- the stream queue ------------------------------------------------------------------------


def change(i) -> tuple:
    return (C.CREATED, (b"f%d" % i,), (), False)


def test_a_full_queue_becomes_one_overflow():
    sub = Subscription(session=None, limit=100)
    for i in range(15_000):
        sub.push(change(i))
    assert sub.high_water <= 100
    got = []
    while (item := sub.get(0)) is not None:
        got.append(item)
    assert got[0] == OVERFLOW_CHANGE and got.count(OVERFLOW_CHANGE) == 1
    assert got[-1] == change(14_999) and len(got) <= 100


def test_identical_changes_coalesce_only_while_queued():
    sub = Subscription(session=None)
    modified = (C.MODIFIED, (b"f",), (), False)
    sub.push(modified)
    sub.push(modified)
    assert sub.get(0) == modified and sub.get(0) is None
    sub.push(modified)  # the client has the first: this one is news
    assert sub.get(0) == modified


def test_a_change_waiting_for_its_path_absorbs_the_same_change():
    sub = Subscription(session=None)
    f, g = (b"f",), (b"g",)
    for change in [
        (C.CREATED, f, (), False),
        (C.MODIFIED, f, (), False),
        (C.CREATED, g, (), False),
        (C.MODIFIED, f, (), False),
    ]:
        sub.push(change)
    assert [sub.get(0) for _ in range(4)] == [
        (C.CREATED, f, (), False),
        (C.MODIFIED, f, (), False),
        (C.CREATED, g, (), False),
        None,
    ]
    # A move or a deletion of the path in between: the same change is news again.
    for change in [
        (C.MODIFIED, f, (), False),
        (C.MOVED, g, f, False),
        (C.MODIFIED, f, (), False),
        (C.ATTRIB, g, (), False),
        (C.DELETED, g, (), False),
        (C.ATTRIB, g, (), False),
    ]:
        sub.push(change)
    assert [sub.get(0)[0] for _ in range(6)] == [
        C.MODIFIED,
        C.MOVED,
        C.MODIFIED,
        C.ATTRIB,
        C.DELETED,
        C.ATTRIB,
    ]


def test_under_pressure_a_waiting_change_absorbs_what_adds_nothing():
    sub = Subscription(session=None, limit=8)
    for i in range(4):  # half full
        sub.push(change(i))
    f = (b"f",)
    for c in [
        (C.CREATED, f, (), False),
        (C.MODIFIED, f, (), False),
        (C.ATTRIB, f, (), False),
        (C.DELETED, f, (), False),
        (C.ATTRIB, f, (), False),
    ]:
        sub.push(c)
    got = [sub.get(0) for _ in range(8)]
    assert got[4:] == [
        (C.CREATED, f, (), False),
        (C.DELETED, f, (), False),
        (C.ATTRIB, f, (), False),
        None,
    ]


def test_end_and_close():
    sub = Subscription(session=None)
    sub.push(change(1))
    sub.end(overflow=True)
    sub.push(change(2))
    assert sub.get(0) == OVERFLOW_CHANGE
    with pytest.raises(EOFError):
        sub.get(0)
    sub = Subscription(session=None)
    sub.push(change(1))
    sub.close()
    with pytest.raises(EOFError):
        sub.get(5)


# --- watchdog events -> changes ---------------------------------------------------------------

ROOT = "/srv/share"
R = os.fsencode(ROOT)


@pytest.mark.parametrize(
    "event, want",
    [
        (FileCreatedEvent(f"{ROOT}/a/b/c"), (C.CREATED, (b"a", b"b", b"c"), (), False)),
        (DirCreatedEvent(f"{ROOT}/a"), (C.CREATED, (b"a",), (), True)),
        (FileDeletedEvent(f"{ROOT}/a"), (C.DELETED, (b"a",), (), False)),
        (DirDeletedEvent(f"{ROOT}/a"), (C.DELETED, (b"a",), (), True)),
        (FileModifiedEvent(f"{ROOT}/a"), (C.MODIFIED, (b"a",), (), False)),
        (DirAttribEvent(f"{ROOT}/a"), (C.ATTRIB, (b"a",), (), True)),
        (DirAttribEvent(ROOT), (C.ATTRIB, (), (), True)),
        (DirMovedEvent(f"{ROOT}/a", f"{ROOT}/b/c"), (C.MOVED, (b"a",), (b"b", b"c"), True)),
        (FileMovedEvent("/elsewhere/x", f"{ROOT}/x"), (C.CREATED, (b"x",), (), False)),
        (FileMovedEvent(f"{ROOT}/x", "/elsewhere/x"), (C.DELETED, (b"x",), (), False)),
        (FileMovedEvent(f"{ROOT}/x", ""), (C.DELETED, (b"x",), (), False)),
        (FileClosedEvent(f"{ROOT}/x"), (CLOSED, (b"x",), (), False)),
        (DirDeletedEvent(ROOT), (GONE, (), (), True)),
        (FileCreatedEvent(os.fsdecode(R + b"/caf\xe9")), (C.CREATED, (b"caf\xe9",), (), False)),
        (FileCreatedEvent(R + b"/raw"), (C.CREATED, (b"raw",), (), False)),
    ],
)
def test_translate(event, want):
    assert translate(event, R) == want


@pytest.mark.parametrize(
    "event",
    [
        DirModifiedEvent(f"{ROOT}/a"),  # its listing changed: the child's change says how
        DirModifiedEvent(ROOT),
        FileOpenedEvent(f"{ROOT}/a"),
        FileClosedNoWriteEvent(f"{ROOT}/a"),
        FileCreatedEvent(f"{ROOT}/a/b", is_synthetic=True),  # inside a moved-in directory
        DirMovedEvent(f"{ROOT}/a/b", f"{ROOT}/c/b", is_synthetic=True),
        FileCreatedEvent("/srv/share2/a"),
        FileCreatedEvent(f"{ROOT}/../etc/passwd"),
        FileCreatedEvent(f"{ROOT}/a/./b"),
        FileMovedEvent("/elsewhere/a", "/elsewhere/b"),
        DirMovedEvent(ROOT, "/elsewhere/share"),
    ],
)
def test_translate_drops(event):
    assert translate(event, R) is None


# --- a watcher far behind, many changes -------------------------------------------------------


def test_an_expectation_outlives_a_slow_watcher(echo, d):
    root, fd, key = d
    with echo.added(fd, b"x"):
        os.mkdir(root / "x")
    assert echo.is_echo(node_probe(C.CREATED, root / "x", key))
    # The records of x and of its directory; the used-up expectation is gone.
    assert not echo._names and set(echo._nodes) == {key, key_of(os.lstat(root / "x"))}


def test_an_expectation_whose_change_never_came_goes_with_the_next_news(echo, d):
    root, fd, key = d
    # Made and removed inside a directory the watcher did not see yet: never reported.
    with echo.added(fd, b"x"):
        (root / "x").write_bytes(b"")
    with echo.removed(fd, b"x"):
        os.unlink(root / "x")
    # A host program makes the name, then removes it: both are news.
    (root / "x").write_bytes(b"host")
    assert not echo.is_echo(node_probe(C.CREATED, root / "x", key))
    os.unlink(root / "x")
    assert not echo.is_echo(Probe(C.DELETED, ((key, b"x"),)))
    assert not echo._names


def test_a_call_ending_after_the_watcher_stat_stays_an_echo(echo, d):
    """The watcher stats the file, then the session's next write ends, then the watcher asks:
    the stamp it took is not the session's last one, and is taken again."""
    root, fd, key = d
    f = root / "f"
    f.write_bytes(b"")
    wfd = os.open(f, os.O_WRONLY)
    try:
        for _ in range(10):
            with echo.node(wfd):
                os.write(wfd, b"x")
            early = node_probe(C.MODIFIED, f, key)
        for _ in range(10):  # far more calls ending before it asks than any history would keep
            with echo.node(wfd):
                os.write(wfd, b"y")
        again = Probe(
            early.kind, early.entries, early.node, lambda: node_probe(C.MODIFIED, f, key).node
        )
        assert echo.is_echo(again)
        with open(f, "ab") as out:
            out.write(b"host")
        assert not echo.is_echo(Probe(again.kind, again.entries, again.node, again.again))
    finally:
        os.close(wfd)


def test_a_host_change_overtaken_by_the_session_is_still_news(echo, d):
    """The host writes, then the session writes before the watcher looks at the host's change:
    the file is then in the state the session left it in, but the session's call found it in
    a state it never left it in, so the next change is news (the client's pages are stale)."""
    root, fd, key = d
    f = root / "f"
    f.write_bytes(b"")
    wfd = os.open(f, os.O_WRONLY)
    try:
        with echo.node(wfd):
            os.write(wfd, b"mine")
        assert echo.is_echo(node_probe(C.MODIFIED, f, key))
        with open(f, "r+b") as host:
            host.write(b"HOST")
        with echo.node(wfd):
            os.write(wfd, b"more")
        assert not echo.is_echo(node_probe(C.MODIFIED, f, key))  # the host's
        assert echo.is_echo(node_probe(C.MODIFIED, f, key))  # the session's own
        # The host's change looked at before the session's next call: that one is no news.
        with open(f, "r+b") as host:
            host.write(b"HOST")
        assert not echo.is_echo(node_probe(C.MODIFIED, f, key))
        with echo.node(wfd):
            os.write(wfd, b"again")
        assert echo.is_echo(node_probe(C.MODIFIED, f, key))
    finally:
        os.close(wfd)


def test_a_creation_on_another_node_is_news(echo, d):
    root, fd, key = d
    with echo.added(fd, b"x"):
        (root / "x").write_bytes(b"")
    # Its change never came (made inside a directory the watcher did not see yet); a host
    # program replaces the file: that creation is news.
    os.unlink(root / "x")
    (root / "x").write_bytes(b"host")
    assert not echo.is_echo(node_probe(C.CREATED, root / "x", key))
    # A later change of the session's own file, gone again when looked at, still matches.
    with echo.added(fd, b"y"):
        (root / "y").write_bytes(b"")
    os.unlink(root / "y")
    assert echo.is_echo(Probe(C.CREATED, ((key, b"y"),)))


def test_a_directory_made_here_is_an_echo_after_changes_inside_it(echo, d):
    root, fd, key = d
    with echo.added(fd, b"x"):
        os.mkdir(root / "x")
    xfd = os.open(root / "x", os.O_PATH | os.O_DIRECTORY)
    try:
        with echo.added(xfd, b"sub"):  # x gets a link more: a stamp the mkdir did not leave
            os.mkdir(root / "x" / "sub")
        with echo.added(xfd, b"f"):
            (root / "x" / "f").write_bytes(b"")
    finally:
        os.close(xfd)
    # The watcher looks at the mkdir's change only now (it was behind): still the session's.
    assert echo.is_echo(node_probe(C.CREATED, root / "x", key))


def test_a_node_losing_one_of_its_names_stays_an_echo(echo, d):
    root, fd, key = d
    (root / "f").write_bytes(b"")  # the host's file, its stamp never recorded
    with echo.added(fd, b"h"):
        os.link(root / "f", root / "h")
    with echo.removed(fd, b"h"):  # f is back to one link: a stamp nobody looks at by name
        os.unlink(root / "h")
    assert echo.is_echo(node_probe(C.ATTRIB, root / "f", key))
    os.chmod(root / "f", 0o604)  # the host, a moment later
    assert not echo.is_echo(node_probe(C.ATTRIB, root / "f", key))


def test_opening_an_existing_file_expects_no_creation(echo, d):
    root, fd, key = d
    (root / "x").write_bytes(b"")
    with echo.added(fd, b"x") as added:
        added.cancel()
    assert not echo.is_echo(node_probe(C.CREATED, root / "x", key))


def test_twenty_thousand_creations_and_deletions_all_match(d):
    root, fd, key = d
    log = EchoLog()
    log.watching(True)
    names = [b"f%05d" % i for i in range(20_000)]
    for name in names:
        with log.added(fd, name):
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    for name in names:
        with log.removed(fd, name):
            os.unlink(name, dir_fd=fd)
    # The watcher is far behind, and the directory may be gone
    assert all(log.is_echo(Probe(C.CREATED, ((None, name),))) for name in names)
    assert all(log.is_echo(Probe(C.DELETED, ((key, name),))) for name in names)
    assert not log._names and log.evicted == 0  # used up, nothing left but node records
    assert not log.is_echo(Probe(C.CREATED, ((key, names[0]),)))  # the host, right after


def test_records_stay_bounded_under_an_endless_burst(d, caplog):
    root, fd, key = d
    log = EchoLog(limit=1000)
    log.watching(True)
    for i in range(10_000):
        with log.added(fd, f"n{i}".encode()):
            (root / f"n{i}").write_bytes(b"")
        assert len(log) <= 1000
    # Node records went first: every recent expectation is still there.
    assert log.evicted > 0
    assert "echo log full" in caplog.text
    assert all(log.is_echo(Probe(C.CREATED, ((key, b"n%d" % i),))) for i in range(9_500, 10_000))


class LaggingObserver(Observer):
    """The inotify observer of a host too busy to look: the first change is taken LAG seconds
    late, and every later one waits behind it."""

    LAG = 4.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lagged = False

    def dispatch_events(self, event_queue):
        if not self._lagged:
            self._lagged = True
            time.sleep(self.LAG)
        super().dispatch_events(event_queue)


def test_own_changes_are_not_echoed_when_the_watcher_is_seconds_behind(tree, server, raw):
    from test_watch import Stream, show

    share, _ = tree
    server.watches.observer_factory = LaggingObserver
    a = raw()
    stream = Stream(a)
    try:
        assert stream.next().kind == C.WATCHING
        d = a.MkDir(parent=1, name=b"many", mode=0o755).entry.handle
        for i in range(300):
            created = a.Create(parent=d, name=b"f%d" % i, mode=0o644, flags=os.O_WRONLY)
            assert (
                a.Write(
                    handle=created.entry.handle, fh=created.fh, offset=0, data=b"x" * 1024
                ).written
                == 1024
            )
            assert a.Release(handle=created.entry.handle, fh=created.fh).errno == 0
        for i in range(300):
            assert a.Unlink(parent=d, name=b"f%d" % i).errno == 0
        assert a.RmDir(parent=1, name=b"many").errno == 0
        # Still there when the watcher looks: a directory changed since it was made, and a
        # file that lost one of its two names.
        kept = a.MkDir(parent=1, name=b"kept", mode=0o755).entry.handle
        assert a.MkDir(parent=kept, name=b"sub", mode=0o755).errno == 0
        created = a.Create(parent=kept, name=b"f", mode=0o644, flags=os.O_WRONLY)
        assert a.Release(handle=created.entry.handle, fh=created.fh).errno == 0
        assert a.Link(handle=created.entry.handle, new_parent=1, new_name=b"hard").errno == 0
        assert a.Unlink(parent=1, name=b"hard").errno == 0
        (share / "marker").write_bytes(b"")  # changes arrive in order: after this, all are in
        got = stream.wait_for(C.CREATED, "marker", timeout=60)
        assert [show(c) for c in got] == [("CREATED", "marker", "", False)]
    finally:
        stream.cancel()
