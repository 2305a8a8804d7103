"""Handle tables: numbering, lookup counts, forget, and fds kept open while in use."""

import errno
import os
import threading

import pytest

from bridgefs.server.handles import NodeTable, OpenTable


def _path_fd(path) -> int:
    return os.open(path, os.O_PATH | os.O_NOFOLLOW)


def _fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


@pytest.fixture
def table(tmp_path):
    for name in "abc":
        (tmp_path / name).write_bytes(b"")
    root = _path_fd(tmp_path)
    st = os.fstat(root)
    t = NodeTable(root, (st.st_dev, st.st_ino), limit=100)
    yield t, tmp_path
    t.close_all()


def _issue(t, path):
    fd = _path_fd(path)
    return t.issue(fd, os.fstat(fd))


def test_root_is_one_and_handles_are_never_reused(table):
    t, d = table
    a = _issue(t, d / "a")
    assert a > 1
    assert t.forget(a, 1)
    again = _issue(t, d / "a")
    assert again == a + 1
    assert _issue(t, d) == 1  # the root's own inode maps to the root handle
    with t.use(1) as fd:
        assert os.path.samestat(os.fstat(fd), os.stat(d))


def test_numbers_start_anywhere(tmp_path):
    # A number of a lost session, sent with a new session's token, names nothing there.
    firsts = set()
    for _ in range(2):
        root = _path_fd(tmp_path)
        st = os.fstat(root)
        nodes = NodeTable(root, (st.st_dev, st.st_ino), limit=10)
        files = OpenTable(limit=10)
        (tmp_path / "f").write_bytes(b"")
        h = _issue(nodes, tmp_path / "f")
        fh = files.add(os.open(tmp_path / "f", os.O_RDONLY), "file", h)
        firsts.add((h, fh))
        files.close_all()
        nodes.close_all()
    assert len(firsts) == 2
    for h, fh in firsts:
        assert 1 < h < 1 << 40 and 0 < fh < 1 << 40


def test_counts_per_inode(table):
    t, d = table
    h = _issue(t, d / "a")
    assert _issue(t, d / "a") == h
    os.link(d / "a", d / "hard")
    assert _issue(t, d / "hard") == h  # one inode, one handle
    assert not t.forget(h, 2)
    assert t.forget(h, 1)
    assert len(t) == 1
    with pytest.raises(OSError) as info:
        with t.use(h):
            pass
    assert info.value.errno == errno.ESTALE


def test_lookup_racing_with_forget(table):
    """The client forgot the 1 reference it had received; a Lookup for the same inode reached
    the server just before that Forget.  The node must survive with the new reference."""
    t, d = table
    h = _issue(t, d / "a")
    assert _issue(t, d / "a") == h  # the racing lookup: count 2
    assert not t.forget(h, 1)  # the forget of the first reference
    with t.use(h):
        pass
    # And the other order: the forget lands first, the lookup then gets a new handle.
    assert t.forget(h, 1)
    assert _issue(t, d / "a") > h


def test_forget_while_in_use_defers_the_close(table):
    t, d = table
    h = _issue(t, d / "a")
    with t.use(h) as fd:
        assert t.forget(h, 1)
        assert _fd_is_open(fd)  # still ours until the block ends
        held = fd
    assert not _fd_is_open(held) or os.readlink(f"/proc/self/fd/{held}") != str(d / "a")


def test_node_limit(tmp_path):
    root = _path_fd(tmp_path)
    st = os.fstat(root)
    t = NodeTable(root, (st.st_dev, st.st_ino), limit=2)
    (tmp_path / "a").write_bytes(b"")
    (tmp_path / "b").write_bytes(b"")
    _issue(t, tmp_path / "a")
    fd = _path_fd(tmp_path / "b")
    with pytest.raises(OSError) as info:
        t.issue(fd, os.fstat(fd))
    assert info.value.errno == errno.ENFILE
    assert not _fd_is_open(fd)  # refused fds are closed, not leaked
    t.close_all()


def test_open_table(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    files = OpenTable(limit=1)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    fh = files.add(fd, "file", 2)
    extra = os.open(tmp_path / "f", os.O_RDONLY)
    with pytest.raises(OSError) as info:
        files.add(extra, "file", 2)
    assert info.value.errno == errno.EMFILE
    with files.use(fh) as of:
        files.release(fh)
        assert os.pread(of.fd, 1, 0) == b"x"  # release waits for the user
    assert not _fd_is_open(fd) or os.readlink(f"/proc/self/fd/{fd}") != str(tmp_path / "f")
    with pytest.raises(OSError) as info:
        files.release(fh)
    assert info.value.errno == errno.EBADF
    assert files.add(os.open(tmp_path / "f", os.O_RDONLY), "file", 2) == fh + 1
    files.close_all()


def test_concurrent_issue_and_forget_keep_counts_exact(table):
    t, d = table
    h = _issue(t, d / "b")
    barrier = threading.Barrier(4)

    def churn():
        barrier.wait()
        for _ in range(500):
            got = _issue(t, d / "b")
            assert got == h
            assert not t.forget(h, 1)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.forget(h, 1)  # exactly the first reference is left
