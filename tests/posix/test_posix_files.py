"""Regular files: open flags, reading and writing, truncation, unlinked files."""

from __future__ import annotations

import errno
import os
import random
import stat

import pytest


def _read_all(fd: int, chunk: int = 1 << 16) -> bytes:
    parts = []
    while True:
        b = os.read(fd, chunk)
        if not b:
            return b"".join(parts)
        parts.append(b)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        assert n > 0
        view = view[n:]


def test_create_write_read_back(root):
    p = root / "f"
    fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
    try:
        assert os.write(fd, b"hello, world\n") == 13
    finally:
        os.close(fd)
    assert p.read_bytes() == b"hello, world\n"
    st = os.stat(p)
    assert stat.S_ISREG(st.st_mode)
    assert st.st_size == 13
    assert st.st_nlink == 1


def test_create_through_same_fd_read_back(root):
    p = root / "f"
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.write(fd, b"abcdef")
        assert os.lseek(fd, 0, os.SEEK_CUR) == 6
        assert os.lseek(fd, 0, os.SEEK_SET) == 0
        assert os.read(fd, 100) == b"abcdef"
        assert os.lseek(fd, -2, os.SEEK_END) == 4
        assert os.read(fd, 100) == b"ef"
    finally:
        os.close(fd)


def test_creat_mode_respects_umask(root):
    old = os.umask(0o027)
    try:
        fd = os.open(root / "f", os.O_CREAT | os.O_WRONLY, 0o666)
        os.close(fd)
        os.mkdir(root / "d", 0o777)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(root / "f").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(root / "d").st_mode) == 0o750


def test_o_creat_without_excl_opens_existing_untouched(root):
    p = root / "f"
    p.write_bytes(b"keep me")
    ino = os.stat(p).st_ino
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        assert os.read(fd, 100) == b"keep me"
    finally:
        os.close(fd)
    assert os.stat(p).st_ino == ino
    assert p.read_bytes() == b"keep me"


def test_o_excl_on_existing_file_eexist(root):
    p = root / "f"
    p.write_bytes(b"x")
    with pytest.raises(OSError) as exc:
        os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    assert exc.value.errno == errno.EEXIST
    assert p.read_bytes() == b"x"


def test_o_excl_on_existing_directory_eexist(root):
    (root / "d").mkdir()
    with pytest.raises(OSError) as exc:
        os.open(root / "d", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    assert exc.value.errno == errno.EEXIST


def test_o_excl_on_dangling_symlink_eexist(root):
    os.symlink("nowhere", root / "link")
    with pytest.raises(OSError) as exc:
        os.open(root / "link", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    assert exc.value.errno == errno.EEXIST
    assert not os.path.lexists(root / "nowhere")


def test_o_trunc_empties_file(root):
    p = root / "f"
    p.write_bytes(b"0123456789")
    ino = os.stat(p).st_ino
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.fstat(fd).st_size == 0
        os.write(fd, b"ab")
    finally:
        os.close(fd)
    assert p.read_bytes() == b"ab"
    assert os.stat(p).st_ino == ino


def test_o_append_always_writes_at_end(root):
    p = root / "f"
    p.write_bytes(b"start-")
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"one-")
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"two")
        assert os.lseek(fd, 0, os.SEEK_CUR) == len(b"start-one-two")
    finally:
        os.close(fd)
    assert p.read_bytes() == b"start-one-two"


def test_o_append_sees_writes_through_other_fd(root):
    p = root / "f"
    p.write_bytes(b"")
    a = os.open(p, os.O_WRONLY | os.O_APPEND)
    b = os.open(p, os.O_WRONLY)
    try:
        os.write(a, b"AAAA")
        os.pwrite(b, b"BBBBBBBB", 0)  # grows the file behind a's back
        os.write(a, b"CC")
    finally:
        os.close(a)
        os.close(b)
    assert p.read_bytes() == b"BBBBBBBBCC"


def test_pread_pwrite_at_offsets(root):
    p = root / "f"
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"0123456789")
        assert os.pwrite(fd, b"AB", 3) == 2
        assert os.pwrite(fd, b"Z", 9) == 1
        # pread/pwrite do not move the file offset
        assert os.lseek(fd, 0, os.SEEK_CUR) == 10
        assert os.pread(fd, 4, 2) == b"2AB5"
        assert os.pread(fd, 100, 8) == b"8Z"
        assert os.pread(fd, 5, 10) == b""
        assert os.pread(fd, 5, 1000) == b""
    finally:
        os.close(fd)
    assert p.read_bytes() == b"012AB5678Z"


def test_sparse_write_beyond_eof_reads_zeros(root):
    p = root / "f"
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"head")
        off = 3 * 1024 * 1024 + 17
        os.pwrite(fd, b"tail", off)
        assert os.fstat(fd).st_size == off + 4
        assert os.pread(fd, 4, 0) == b"head"
        gap = os.pread(fd, off - 4, 4)
        assert gap == bytes(off - 4)
        assert os.pread(fd, 10, off) == b"tail"
    finally:
        os.close(fd)
    data = p.read_bytes()
    assert len(data) == off + 4
    assert data == b"head" + bytes(off - 4) + b"tail"


def test_lseek_past_eof_then_write_fills_zeros(root):
    p = root / "f"
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        assert os.lseek(fd, 5000, os.SEEK_SET) == 5000
        assert os.fstat(fd).st_size == 0  # seeking alone does not extend
        os.write(fd, b"x")
    finally:
        os.close(fd)
    assert p.read_bytes() == bytes(5000) + b"x"


def test_truncate_down_and_up(root):
    p = root / "f"
    p.write_bytes(b"abcdefghij")
    os.truncate(p, 4)
    assert os.stat(p).st_size == 4
    assert p.read_bytes() == b"abcd"
    os.truncate(p, 12)
    assert os.stat(p).st_size == 12
    # data cut off by the shrink must not come back when growing again
    assert p.read_bytes() == b"abcd" + bytes(8)
    os.truncate(p, 0)
    assert os.stat(p).st_size == 0
    assert p.read_bytes() == b""


def test_truncate_large_file_down_then_up_reads_zeros(root):
    p = root / "f"
    data = random.Random(1).randbytes(300_000)
    p.write_bytes(data)
    os.truncate(p, 70_001)
    os.truncate(p, 300_000)
    assert p.read_bytes() == data[:70_001] + bytes(300_000 - 70_001)


def test_ftruncate(root):
    p = root / "f"
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"0123456789")
        os.ftruncate(fd, 3)
        assert os.fstat(fd).st_size == 3
        assert os.stat(p).st_size == 3
        assert os.pread(fd, 100, 0) == b"012"
        os.ftruncate(fd, 6)
        assert os.pread(fd, 100, 0) == b"012\0\0\0"
        # the file offset is not changed by ftruncate: writing at 10 extends
        os.write(fd, b"E")
        assert os.fstat(fd).st_size == 11
        assert os.pread(fd, 100, 0) == b"012" + bytes(7) + b"E"
    finally:
        os.close(fd)


def test_ftruncate_on_readonly_fd_fails(root):
    p = root / "f"
    p.write_bytes(b"abc")
    fd = os.open(p, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as exc:
            os.ftruncate(fd, 0)
        assert exc.value.errno in (errno.EINVAL, errno.EBADF)
    finally:
        os.close(fd)
    assert p.read_bytes() == b"abc"


def test_truncate_directory_eisdir(root):
    (root / "d").mkdir()
    with pytest.raises(OSError) as exc:
        os.truncate(root / "d", 0)
    assert exc.value.errno == errno.EISDIR


def test_truncate_missing_enoent(root):
    with pytest.raises(OSError) as exc:
        os.truncate(root / "missing", 0)
    assert exc.value.errno == errno.ENOENT


def test_unlink_then_read_and_write_through_open_fd(root):
    p = root / "f"
    p.write_bytes(b"still here")
    fd = os.open(p, os.O_RDWR)
    try:
        os.unlink(p)
        assert not os.path.lexists(p)
        assert "f" not in os.listdir(root)
        assert os.read(fd, 100) == b"still here"
        os.pwrite(fd, b"STILL", 0)
        assert os.pread(fd, 100, 0) == b"STILL here"
        st = os.fstat(fd)
        assert st.st_nlink == 0
        assert st.st_size == 10
        # the name is free again, and a new file there is a different file
        p.write_bytes(b"new")
        assert os.pread(fd, 100, 0) == b"STILL here"
        assert p.read_bytes() == b"new"
    finally:
        os.close(fd)
    assert p.read_bytes() == b"new"


def test_fstat_after_unlink_nlink_zero(root):
    p = root / "f"
    p.write_bytes(b"x")
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.fstat(fd).st_nlink == 1
        os.unlink(p)
        assert os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)


def test_large_write_read_back_identical(root):
    p = root / "big"
    data = random.Random(42).randbytes(4 * 1024 * 1024)
    fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    assert os.stat(p).st_size == len(data)
    fd = os.open(p, os.O_RDONLY)
    try:
        got = _read_all(fd, 1 << 20)
        # unaligned reads straddling internal block boundaries
        assert os.pread(fd, 10_000, 131_067) == data[131_067:141_067]
        assert os.pread(fd, 4097, len(data) - 4096) == data[-4096:]
    finally:
        os.close(fd)
    assert len(got) == len(data)
    assert got == data


def test_many_small_unaligned_writes(root):
    p = root / "f"
    rnd = random.Random(7)
    chunks = [rnd.randbytes(rnd.randint(1, 5000)) for _ in range(200)]
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        for c in chunks:
            _write_all(fd, c)
    finally:
        os.close(fd)
    assert p.read_bytes() == b"".join(chunks)


def test_read_at_eof_returns_empty(root):
    p = root / "f"
    p.write_bytes(b"abc")
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.read(fd, 3) == b"abc"
        assert os.read(fd, 10) == b""
        assert os.read(fd, 10) == b""
    finally:
        os.close(fd)
    empty = root / "empty"
    empty.write_bytes(b"")
    fd = os.open(empty, os.O_RDONLY)
    try:
        assert os.read(fd, 10) == b""
    finally:
        os.close(fd)


def test_write_on_readonly_fd_ebadf(root):
    p = root / "f"
    p.write_bytes(b"abc")
    fd = os.open(p, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as exc:
            os.write(fd, b"x")
        assert exc.value.errno == errno.EBADF
    finally:
        os.close(fd)
    assert p.read_bytes() == b"abc"


def test_read_on_writeonly_fd_ebadf(root):
    p = root / "f"
    p.write_bytes(b"abc")
    fd = os.open(p, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as exc:
            os.read(fd, 1)
        assert exc.value.errno == errno.EBADF
    finally:
        os.close(fd)


def test_two_fds_see_each_others_writes(root):
    p = root / "f"
    p.write_bytes(b"")
    w = os.open(p, os.O_WRONLY)
    r = os.open(p, os.O_RDONLY)
    try:
        os.write(w, b"first")
        assert os.read(r, 100) == b"first"
        os.write(w, b"second")
        assert os.read(r, 100) == b"second"
        assert os.fstat(r).st_size == 11
    finally:
        os.close(w)
        os.close(r)
