"""Two clients mounting the same share of one server (two VMs over one host folder) see each
other's changes within a few seconds: through the server's change stream (the default), or once
the short entry/attribute timeouts (1 s) have passed (``--no-events``)."""

from __future__ import annotations

import os

import pytest

from mounting import bridgefs_server, remote_mount
from remotekit import listen_address, poll, wait_events_flowing


@pytest.fixture
def two(tmp_path, host_dir, mode):
    """(host folder, mount A, mount B): two mounts of one share of one server, in each mode."""
    _name, transport, extra = mode
    with bridgefs_server({"share": str(host_dir)}, listen_address(transport, tmp_path)) as (
        address,
        _server,
    ):
        with (
            remote_mount(address, "share", tmp_path / "a", *extra),
            remote_mount(address, "share", tmp_path / "b", *extra),
        ):
            if "--no-events" not in extra:
                wait_events_flowing(tmp_path / "a")
                wait_events_flowing(tmp_path / "b")
            yield host_dir, tmp_path / "a", tmp_path / "b"


def test_create_and_write_seen_by_the_other(two):
    host, a, b = two
    assert not (b / "f").exists()
    (a / "f").write_bytes(b"from a\n")
    poll(lambda: (b / "f").read_bytes() == b"from a\n", what="b sees a's new file")
    assert (host / "f").read_bytes() == b"from a\n"
    # Now b writes (it has read the file: its page cache holds the old content of a's write).
    (b / "f").write_bytes(b"b rewrote it, longer\n")
    poll(lambda: (a / "f").read_bytes() == b"b rewrote it, longer\n", what="a sees b's rewrite")
    with open(a / "f", "ab") as f:
        f.write(b"a appended\n")
    poll(
        lambda: (b / "f").read_bytes() == b"b rewrote it, longer\na appended\n",
        what="b sees a's append",
    )


def test_same_size_rewrite_seen_by_the_other(two):
    _, a, b = two
    (a / "f").write_bytes(b"AAAA")
    poll(lambda: (b / "f").read_bytes() == b"AAAA", what="b reads the first version")
    fd = os.open(a / "f", os.O_WRONLY)
    try:
        os.pwrite(fd, b"BB", 1)
    finally:
        os.close(fd)
    poll(lambda: (b / "f").read_bytes() == b"ABBA", what="b sees a same-size overwrite")


def test_rename_seen_by_the_other(two):
    host, a, b = two
    (a / "d1").mkdir()
    (a / "d2").mkdir()
    (a / "d1" / "old").write_bytes(b"moving")
    poll(lambda: (b / "d1" / "old").read_bytes() == b"moving", what="b sees the file")
    ino = os.stat(b / "d1" / "old").st_ino
    os.rename(a / "d1" / "old", a / "d2" / "new")
    poll(lambda: not os.path.lexists(b / "d1" / "old"), what="b no longer sees the old name")
    poll(lambda: (b / "d2" / "new").read_bytes() == b"moving", what="b sees the new name")
    poll(lambda: os.stat(b / "d2" / "new").st_ino == ino, what="the same file, renamed")
    poll(lambda: os.listdir(b / "d1") == [], what="b's listing of d1 is empty")
    # A rename over an existing file, done in b, seen in a.
    (b / "d2" / "other").write_bytes(b"other")
    poll(lambda: (a / "d2" / "other").read_bytes() == b"other", what="a sees b's file")
    os.rename(b / "d2" / "other", b / "d2" / "new")
    poll(lambda: sorted(os.listdir(a / "d2")) == ["new"], what="a sees the rename over")
    poll(lambda: (a / "d2" / "new").read_bytes() == b"other", what="a reads the replacement")
    assert (host / "d2" / "new").read_bytes() == b"other"


def test_delete_seen_by_the_other(two):
    host, a, b = two
    (a / "gone").write_bytes(b"soon gone")
    (a / "dir").mkdir()
    (a / "dir" / "x").write_bytes(b"x")
    poll(lambda: (b / "gone").read_bytes() == b"soon gone", what="b sees the file")
    poll(lambda: (b / "dir" / "x").read_bytes() == b"x", what="b sees the nested file")
    os.unlink(a / "gone")
    os.unlink(a / "dir" / "x")
    os.rmdir(a / "dir")
    poll(lambda: not os.path.lexists(b / "gone"), what="b sees the delete")
    poll(lambda: not os.path.lexists(b / "dir"), what="b sees the rmdir")
    poll(lambda: os.listdir(b) == [], what="b's listing is empty")
    with pytest.raises(FileNotFoundError):
        (b / "gone").read_bytes()
    assert os.listdir(host) == []


def test_open_file_deleted_by_the_other(two):
    """b keeps reading a file it has open after a deletes it (the server holds it open)."""
    _, a, b = two
    (a / "f").write_bytes(b"still readable\n")
    poll(lambda: (b / "f").read_bytes() == b"still readable\n", what="b sees the file")
    with open(b / "f", "rb") as f:
        os.unlink(a / "f")
        poll(lambda: not os.path.lexists(b / "f"), what="b sees the delete")
        f.seek(0)
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        assert f.read() == b"still readable\n"


def test_directory_created_by_the_other_is_usable(two):
    _, a, b = two
    (a / "x" / "y").mkdir(parents=True)
    poll(lambda: os.path.isdir(b / "x" / "y"), what="b sees the new directories")
    (b / "x" / "y" / "from-b").write_bytes(b"b")
    poll(lambda: (a / "x" / "y" / "from-b").read_bytes() == b"b", what="a sees b's file in it")
    poll(lambda: sorted(os.listdir(a / "x" / "y")) == ["from-b"], what="a lists b's file")
