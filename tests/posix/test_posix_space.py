"""Space management and data movement: fallocate, SEEK_DATA/SEEK_HOLE,
copy_file_range, fsync/fdatasync, statvfs."""

from __future__ import annotations

import ctypes
import errno
import os
import random

import pytest

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


@pytest.fixture
def fallocate(libc):
    fn = libc.fallocate
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int

    def call(fd, mode, offset, length):
        if fn(fd, mode, offset, length) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))

    return call


def _open(path, flags=os.O_RDWR | os.O_CREAT, mode=0o644):
    return os.open(path, flags, mode)


# --- fallocate ------------------------------------------------------------


def test_posix_fallocate_grows_file(root):
    p = root / "f"
    fd = _open(p)
    try:
        os.write(fd, b"abc")
        os.posix_fallocate(fd, 0, 1024 * 1024)
        assert os.fstat(fd).st_size == 1024 * 1024
        assert os.pread(fd, 3, 0) == b"abc"
        assert os.pread(fd, 1024 * 1024, 3) == bytes(1024 * 1024 - 3)
        # allocating inside the file changes neither size nor data
        os.posix_fallocate(fd, 100, 1000)
        assert os.fstat(fd).st_size == 1024 * 1024
        assert os.pread(fd, 3, 0) == b"abc"
        # and with an offset beyond EOF the size becomes offset + len
        os.posix_fallocate(fd, 2 * 1024 * 1024, 4096)
        assert os.fstat(fd).st_size == 2 * 1024 * 1024 + 4096
    finally:
        os.close(fd)
    assert os.stat(p).st_size == 2 * 1024 * 1024 + 4096


def test_fallocate_keep_size_does_not_grow(root, fallocate):
    p = root / "f"
    fd = _open(p)
    try:
        os.write(fd, b"0123456789")
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 1024 * 1024)
        assert os.fstat(fd).st_size == 10
        assert os.pread(fd, 100, 0) == b"0123456789"
    finally:
        os.close(fd)


def test_fallocate_punch_hole_zeroes_range_keeps_size(root, fallocate):
    p = root / "f"
    size = 256 * 1024
    data = random.Random(3).randbytes(size)
    p.write_bytes(data)
    fd = _open(p)
    try:
        fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 64 * 1024, 64 * 1024)
        assert os.fstat(fd).st_size == size
        got = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    expected = data[: 64 * 1024] + bytes(64 * 1024) + data[128 * 1024 :]
    assert got == expected
    assert p.read_bytes() == expected


def test_fallocate_punch_hole_unaligned_range(root, fallocate):
    p = root / "f"
    size = 50_000
    data = random.Random(4).randbytes(size)
    p.write_bytes(data)
    fd = _open(p)
    try:
        fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 1_000, 12_345)
        assert os.fstat(fd).st_size == size
    finally:
        os.close(fd)
    assert p.read_bytes() == data[:1_000] + bytes(12_345) + data[13_345:]


def test_fallocate_punch_hole_past_eof_keeps_size(root, fallocate):
    p = root / "f"
    p.write_bytes(b"x" * 10_000)
    fd = _open(p)
    try:
        fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 8_192, 1024 * 1024)
        assert os.fstat(fd).st_size == 10_000
    finally:
        os.close(fd)
    assert p.read_bytes() == b"x" * 8_192 + bytes(10_000 - 8_192)


def test_fallocate_punch_hole_without_keep_size_eopnotsupp(root, fallocate):
    p = root / "f"
    p.write_bytes(b"x" * 8192)
    fd = _open(p)
    try:
        with pytest.raises(OSError) as exc:
            fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096)
        assert exc.value.errno == errno.EOPNOTSUPP  # checked by the VFS
    finally:
        os.close(fd)
    assert p.read_bytes() == b"x" * 8192


def test_fallocate_on_readonly_fd_ebadf(root, fallocate):
    p = root / "f"
    p.write_bytes(b"x")
    fd = os.open(p, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as exc:
            fallocate(fd, 0, 0, 4096)
        assert exc.value.errno == errno.EBADF
    finally:
        os.close(fd)
    assert os.stat(p).st_size == 1


# --- SEEK_DATA / SEEK_HOLE ------------------------------------------------


def test_seek_data_and_hole_on_dense_file(root):
    p = root / "f"
    size = 100_000
    p.write_bytes(os.urandom(size))
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
        assert 0 <= hole <= size
        # the implicit hole at EOF: SEEK_HOLE never goes beyond the size
        assert 0 <= os.lseek(fd, size - 1, os.SEEK_HOLE) <= size
        # offset inside data: SEEK_DATA returns something in [offset, size)
        off = os.lseek(fd, 5_000, os.SEEK_DATA)
        assert 5_000 <= off < size
    finally:
        os.close(fd)


def test_seek_data_at_or_after_eof_enxio(root):
    p = root / "f"
    p.write_bytes(b"x" * 5000)
    fd = os.open(p, os.O_RDONLY)
    try:
        for off in (5000, 5001, 1 << 30):
            with pytest.raises(OSError) as exc:
                os.lseek(fd, off, os.SEEK_DATA)
            assert exc.value.errno == errno.ENXIO, off
            with pytest.raises(OSError) as exc:
                os.lseek(fd, off, os.SEEK_HOLE)
            assert exc.value.errno == errno.ENXIO, off
    finally:
        os.close(fd)


def test_seek_data_on_empty_file_enxio(root):
    p = root / "f"
    p.write_bytes(b"")
    fd = os.open(p, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as exc:
            os.lseek(fd, 0, os.SEEK_DATA)
        assert exc.value.errno == errno.ENXIO
    finally:
        os.close(fd)


def test_seek_data_hole_on_sparse_file_stay_in_bounds(root):
    p = root / "f"
    size = 8 * 1024 * 1024
    fd = _open(p)
    try:
        os.pwrite(fd, b"tail", size - 4)
        data = os.lseek(fd, 0, os.SEEK_DATA)
        assert 0 <= data <= size - 4  # the written byte range is data
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
        assert 0 <= hole <= size
        assert os.lseek(fd, size - 4, os.SEEK_DATA) == size - 4
    finally:
        os.close(fd)


# --- copy_file_range ------------------------------------------------------


def _copy_all(src_fd, dst_fd, count, offset_src=None, offset_dst=None):
    copied = 0
    while copied < count:
        n = os.copy_file_range(
            src_fd,
            dst_fd,
            count - copied,
            None if offset_src is None else offset_src + copied,
            None if offset_dst is None else offset_dst + copied,
        )
        if n == 0:
            break
        copied += n
    return copied


def test_copy_file_range_copies_bytes(root):
    data = random.Random(5).randbytes(3 * 1024 * 1024 + 77)
    (root / "src").write_bytes(data)
    src = os.open(root / "src", os.O_RDONLY)
    dst = _open(root / "dst")
    try:
        assert _copy_all(src, dst, len(data)) == len(data)
        # the implicit offsets advanced
        assert os.lseek(src, 0, os.SEEK_CUR) == len(data)
        assert os.lseek(dst, 0, os.SEEK_CUR) == len(data)
        # at EOF of the source nothing more is copied
        assert os.copy_file_range(src, dst, 100) == 0
    finally:
        os.close(src)
        os.close(dst)
    assert (root / "dst").read_bytes() == data
    assert (root / "src").read_bytes() == data


def test_copy_file_range_with_offsets(root):
    (root / "src").write_bytes(b"0123456789abcdef")
    (root / "dst").write_bytes(b"ZZZZZZZZ")
    src = os.open(root / "src", os.O_RDONLY)
    dst = os.open(root / "dst", os.O_WRONLY)
    try:
        assert _copy_all(src, dst, 6, offset_src=10, offset_dst=4) == 6
        # explicit offsets leave the file offsets alone
        assert os.lseek(src, 0, os.SEEK_CUR) == 0
        assert os.lseek(dst, 0, os.SEEK_CUR) == 0
        # copying past the end of the destination extends it (with a gap of zeros)
        assert _copy_all(src, dst, 3, offset_src=0, offset_dst=12) == 3
    finally:
        os.close(src)
        os.close(dst)
    assert (root / "dst").read_bytes() == b"ZZZZabcdef\x00\x00012"


def test_copy_file_range_between_directories(root):
    (root / "a").mkdir()
    (root / "b").mkdir()
    data = os.urandom(70_000)
    (root / "a" / "src").write_bytes(data)
    src = os.open(root / "a" / "src", os.O_RDONLY)
    dst = _open(root / "b" / "dst")
    try:
        assert _copy_all(src, dst, len(data)) == len(data)
    finally:
        os.close(src)
        os.close(dst)
    assert (root / "b" / "dst").read_bytes() == data


# --- fsync / statvfs -------------------------------------------------------


def test_fsync_and_fdatasync(root):
    p = root / "f"
    fd = _open(p)
    try:
        os.write(fd, b"durable")
        os.fsync(fd)
        os.fdatasync(fd)
        os.ftruncate(fd, 3)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert p.read_bytes() == b"dur"
    # fsync on a read-only descriptor and on a directory is allowed too
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def test_statvfs(root):
    sv = os.statvfs(root)
    assert sv.f_namemax >= 255
    assert sv.f_bsize > 0
    assert sv.f_frsize > 0
    assert sv.f_bfree <= sv.f_blocks
    assert sv.f_bavail <= sv.f_blocks
    (root / "f").write_bytes(b"x")
    fd = os.open(root / "f", os.O_RDONLY)
    try:
        fsv = os.fstatvfs(fd)
    finally:
        os.close(fd)
    assert fsv.f_namemax == sv.f_namemax
    assert fsv.f_bsize == sv.f_bsize
