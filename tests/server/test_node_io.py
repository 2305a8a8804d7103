"""I/O by node (fh 0) and ListDir: what a client whose kernel opens nothing (no-open mode) uses."""

import errno
import os

import pytest


@pytest.fixture
def client(tree, raw):
    return raw()


def test_write_read_fsync_truncate_by_node(tree, client):
    share, _ = tree
    h = client.handle(1, b"file")
    assert client.Write(handle=h, offset=7, data=b"more\n").written == 5
    assert (share / "file").read_bytes() == b"inside\nmore\n"
    assert client.Read(handle=h, offset=0, size=100).data == b"inside\nmore\n"
    assert client.Fsync(handle=h, datasync=True).errno == 0
    assert client.SetAttr(handle=h, size=3).attr.size == 3
    assert (share / "file").read_bytes() == b"ins"


def test_append_by_node_lands_at_the_host_end(tree, client):
    share, _ = tree
    h = client.handle(1, b"file")
    with open(share / "file", "ab") as f:
        f.write(b"host\n")  # the client's idea of the size is now old
    assert client.Write(handle=h, offset=0, data=b"vm\n", flags=os.O_WRONLY | os.O_APPEND).errno == 0
    assert (share / "file").read_bytes() == b"inside\nhost\nvm\n"


def test_unlinked_node_is_still_readable_and_writable(tree, client):
    share, _ = tree
    h = client.handle(1, b"file")
    os.unlink(share / "file")
    assert client.Write(handle=h, offset=0, data=b"I").written == 1
    assert client.Read(handle=h, offset=0, size=100).data == b"Inside\n"


def test_fallocate_lseek_and_copy_by_node(tree, client):
    share, _ = tree
    src = client.handle(1, b"file")
    dst = client.handle(client.handle(1, b"dir"), b"nested")
    assert client.Fallocate(handle=dst, offset=0, length=1 << 16).errno == 0
    assert os.stat(share / "dir" / "nested").st_size == 1 << 16
    assert client.Lseek(handle=src, offset=0, whence=os.SEEK_DATA).offset == 0
    assert client.CopyFileRange(handle_in=src, handle_out=dst, length=7).copied == 7
    assert (share / "dir" / "nested").read_bytes()[:7] == b"inside\n"


def test_node_io_on_a_directory_or_a_forged_handle_is_refused(tree, client):
    d = client.handle(1, b"dir")
    assert client.Write(handle=d, offset=0, data=b"x").errno == errno.EISDIR
    assert client.Write(handle=987654, offset=0, data=b"x").errno == errno.ESTALE
    assert client.ListDir(handle=client.handle(1, b"file")).errno == errno.ENOTDIR
    assert client.ListDir(handle=987654).errno == errno.ESTALE


def test_listdir_continues_at_a_cookie(tree, client):
    share, _ = tree
    for i in range(50):
        (share / "dir" / f"n{i:02}").write_bytes(b"")
    d = client.handle(1, b"dir")
    first = client.ListDir(handle=d, max_entries=20)
    assert len(first.entries) == 20 and not first.eof
    rest = client.ListDir(handle=d, offset=first.entries[-1].offset, max_entries=1000)
    assert rest.eof
    names = [e.name for e in list(first.entries) + list(rest.entries)]
    assert len(names) == len(set(names)) == 53  # ".", "..", "nested" and the 50
    assert not any(e.HasField("entry") for e in rest.entries)  # plus was not asked
    plus = client.ListDir(handle=d, plus=True, max_entries=1000)
    assert all(e.entry.handle for e in plus.entries if e.name not in (b".", b".."))
