"""Inode attributes (mode, ownership, timestamps, size, inode numbers) and special files."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import time

import pytest

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100

# Timestamps that the kernel can store (ext4 with 256-byte inodes and tmpfs
# both keep nanoseconds; keep within 1970..2038 and away from 0 so no backend
# has an excuse).
ATIME_NS = 1_234_567_890_123_456_789
MTIME_NS = 1_300_000_000_987_654_321
OLD_NS = 1_000_000_000_000_000_000  # 2001-09-09


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


@pytest.fixture
def utimensat(libc):
    fn = libc.utimensat
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Timespec), ctypes.c_int]
    fn.restype = ctypes.c_int

    def call(path, atime, mtime, flags=0):
        """atime/mtime: (sec, nsec) tuples, or UTIME_NOW / UTIME_OMIT."""
        ts = (_Timespec * 2)()
        for i, t in enumerate((atime, mtime)):
            if isinstance(t, tuple):
                ts[i].tv_sec, ts[i].tv_nsec = t
            else:
                ts[i].tv_sec, ts[i].tv_nsec = 0, t
        if fn(AT_FDCWD, os.fsencode(path), ts, flags) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), str(path))

    return call


def _mtime_moves_forward(path, action):
    """Set path's mtime far into the past, run action(), return the new stat."""
    os.utime(path, ns=(OLD_NS, OLD_NS))
    assert os.stat(path).st_mtime_ns == OLD_NS
    before = time.time()
    action()
    st = os.stat(path)
    assert st.st_mtime_ns > OLD_NS
    assert abs(st.st_mtime - before) < 10
    return st


# --- mode -----------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o000, 0o755, 0o777, 0o4755, 0o2755, 0o6711, 0o400])
def test_chmod_file_round_trip(root, mode):
    p = root / "f"
    p.write_bytes(b"x")
    os.chmod(p, mode)
    st = os.stat(p)
    assert stat.S_IMODE(st.st_mode) == mode
    assert stat.S_ISREG(st.st_mode)
    fd = os.open(p, os.O_RDONLY)  # root may open it regardless of mode
    try:
        assert stat.S_IMODE(os.fstat(fd).st_mode) == mode
    finally:
        os.close(fd)


@pytest.mark.parametrize("mode", [0o755, 0o700, 0o1777, 0o2775, 0o555])
def test_chmod_directory_round_trip(root, mode):
    d = root / "d"
    d.mkdir()
    os.chmod(d, mode)
    st = os.stat(d)
    assert stat.S_IMODE(st.st_mode) == mode
    assert stat.S_ISDIR(st.st_mode)


def test_fchmod(root):
    p = root / "f"
    p.write_bytes(b"")
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fchmod(fd, 0o4711)
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o4711
    finally:
        os.close(fd)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o4711


def test_chmod_through_symlink_changes_target(root):
    (root / "t").write_bytes(b"")
    os.chmod(root / "t", 0o644)
    os.symlink("t", root / "l")
    os.chmod(root / "l", 0o600)
    assert stat.S_IMODE(os.stat(root / "t").st_mode) == 0o600
    assert stat.S_ISLNK(os.lstat(root / "l").st_mode)


# --- ownership ------------------------------------------------------------


@pytest.fixture
def as_root():
    if os.geteuid() != 0:
        pytest.skip("chown to arbitrary ids needs root")


def test_chown_file(root, as_root):
    p = root / "f"
    p.write_bytes(b"")
    os.chown(p, 1234, 5678)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.chown(p, -1, 42)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 42)
    os.chown(p, 99, -1)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (99, 42)


def test_chown_directory_and_fchown(root, as_root):
    d = root / "d"
    d.mkdir()
    os.chown(d, 1234, 5678)
    st = os.stat(d)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    p = root / "f"
    p.write_bytes(b"")
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fchown(fd, 1234, 5678)
        assert (os.fstat(fd).st_uid, os.fstat(fd).st_gid) == (1234, 5678)
    finally:
        os.close(fd)


def test_lchown_changes_link_not_target(root, as_root):
    (root / "t").write_bytes(b"")
    os.symlink("t", root / "l")
    t_before = os.stat(root / "t")
    os.lchown(root / "l", 1234, 5678)
    lst = os.lstat(root / "l")
    assert (lst.st_uid, lst.st_gid) == (1234, 5678)
    t_after = os.stat(root / "t")
    assert (t_after.st_uid, t_after.st_gid) == (t_before.st_uid, t_before.st_gid)


def test_new_file_owned_by_creator(root):
    p = root / "f"
    p.write_bytes(b"")
    st = os.stat(p)
    assert st.st_uid == os.geteuid()
    (root / "d").mkdir()
    assert os.stat(root / "d").st_uid == os.geteuid()


# --- timestamps -----------------------------------------------------------


def test_utime_ns_round_trip_exact(root):
    p = root / "f"
    p.write_bytes(b"x")
    os.utime(p, ns=(ATIME_NS, MTIME_NS))
    st = os.stat(p)
    assert st.st_atime_ns == ATIME_NS
    assert st.st_mtime_ns == MTIME_NS
    # and again with different values, on a directory too
    d = root / "d"
    d.mkdir()
    os.utime(d, ns=(MTIME_NS, ATIME_NS))
    st = os.stat(d)
    assert st.st_atime_ns == MTIME_NS
    assert st.st_mtime_ns == ATIME_NS


def test_utime_seconds_float(root):
    p = root / "f"
    p.write_bytes(b"x")
    os.utime(p, (1_000_000_000, 1_100_000_000.5))
    st = os.stat(p)
    assert st.st_atime_ns == 1_000_000_000 * 10**9
    assert st.st_mtime_ns == 1_100_000_000_500_000_000


def test_utime_now(root):
    p = root / "f"
    p.write_bytes(b"x")
    os.utime(p, ns=(OLD_NS, OLD_NS))
    now = time.time()
    os.utime(p)
    st = os.stat(p)
    assert abs(st.st_mtime - now) < 5
    assert abs(st.st_atime - now) < 5


def test_futime_ns_round_trip(root):
    p = root / "f"
    p.write_bytes(b"x")
    fd = os.open(p, os.O_RDONLY)
    try:
        os.utime(fd, ns=(ATIME_NS, MTIME_NS))
        st = os.fstat(fd)
    finally:
        os.close(fd)
    assert (st.st_atime_ns, st.st_mtime_ns) == (ATIME_NS, MTIME_NS)


def test_utimensat_omit_keeps_that_timestamp(root, utimensat):
    p = root / "f"
    p.write_bytes(b"x")
    os.utime(p, ns=(ATIME_NS, MTIME_NS))
    utimensat(p, (1_111_111_111, 222), UTIME_OMIT)
    st = os.stat(p)
    assert st.st_atime_ns == 1_111_111_111_000_000_222
    assert st.st_mtime_ns == MTIME_NS
    utimensat(p, UTIME_OMIT, (1_222_222_222, 333))
    st = os.stat(p)
    assert st.st_atime_ns == 1_111_111_111_000_000_222
    assert st.st_mtime_ns == 1_222_222_222_000_000_333


def test_utimensat_now_for_one_timestamp(root, utimensat):
    p = root / "f"
    p.write_bytes(b"x")
    os.utime(p, ns=(ATIME_NS, MTIME_NS))
    now = time.time()
    utimensat(p, UTIME_OMIT, UTIME_NOW)
    st = os.stat(p)
    assert st.st_atime_ns == ATIME_NS
    assert abs(st.st_mtime - now) < 5


def test_utime_symlink_nofollow(root, utimensat):
    (root / "t").write_bytes(b"")
    os.utime(root / "t", ns=(ATIME_NS, MTIME_NS))
    os.symlink("t", root / "l")
    utimensat(root / "l", (1_000_000_000, 5), (1_000_000_001, 7), AT_SYMLINK_NOFOLLOW)
    lst = os.lstat(root / "l")
    assert lst.st_atime_ns == 1_000_000_000_000_000_005
    assert lst.st_mtime_ns == 1_000_000_001_000_000_007
    st = os.stat(root / "t")
    assert (st.st_atime_ns, st.st_mtime_ns) == (ATIME_NS, MTIME_NS)


def test_utime_missing_enoent(root):
    with pytest.raises(OSError) as exc:
        os.utime(root / "missing", ns=(ATIME_NS, MTIME_NS))
    assert exc.value.errno == errno.ENOENT


def test_mtime_changes_after_write(root):
    p = root / "f"
    p.write_bytes(b"x")

    def write():
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"more")
        finally:
            os.close(fd)

    st = _mtime_moves_forward(p, write)
    assert st.st_size == 5
    assert st.st_ctime_ns >= st.st_mtime_ns


def test_mtime_changes_after_write_seen_through_open_fd(root):
    p = root / "f"
    p.write_bytes(b"x")
    fd = os.open(p, os.O_RDWR)
    try:
        os.utime(fd, ns=(OLD_NS, OLD_NS))
        os.pwrite(fd, b"y", 0)
        assert os.fstat(fd).st_mtime_ns > OLD_NS
    finally:
        os.close(fd)


def test_mtime_changes_after_truncate(root):
    p = root / "f"
    p.write_bytes(b"0123456789")
    st = _mtime_moves_forward(p, lambda: os.truncate(p, 3))
    assert st.st_size == 3


def test_directory_mtime_changes_when_entries_change(root):
    d = root / "d"
    d.mkdir()
    _mtime_moves_forward(d, lambda: (d / "new").write_bytes(b""))
    _mtime_moves_forward(d, lambda: os.rename(d / "new", d / "renamed"))
    _mtime_moves_forward(d, lambda: os.unlink(d / "renamed"))
    _mtime_moves_forward(d, lambda: os.mkdir(d / "sub"))
    _mtime_moves_forward(d, lambda: os.rmdir(d / "sub"))


def test_ctime_changes_after_chmod(root):
    p = root / "f"
    p.write_bytes(b"x")
    os.chmod(p, 0o644)
    before = os.stat(p)
    time.sleep(0.1)
    os.chmod(p, 0o600)
    after = os.stat(p)
    assert after.st_ctime_ns > before.st_ctime_ns
    assert abs(after.st_ctime - time.time()) < 10
    # chmod does not touch mtime
    assert after.st_mtime_ns == before.st_mtime_ns


def test_ctime_changes_after_utime_and_link(root):
    p = root / "f"
    p.write_bytes(b"x")
    before = os.stat(p).st_ctime_ns
    time.sleep(0.1)
    os.utime(p, ns=(ATIME_NS, MTIME_NS))
    mid = os.stat(p).st_ctime_ns
    assert mid > before  # ctime cannot be set to the past by utime
    time.sleep(0.1)
    os.link(p, root / "g")
    assert os.stat(p).st_ctime_ns > mid


def test_new_file_timestamps_are_now(root):
    before = time.time()
    p = root / "f"
    p.write_bytes(b"x")
    st = os.stat(p)
    for t in (st.st_atime, st.st_mtime, st.st_ctime):
        assert abs(t - before) < 10


# --- size, blocks, inode numbers -------------------------------------------


def test_size_and_blocks_plausible(root):
    p = root / "f"
    size = 64 * 1024 + 123
    p.write_bytes(os.urandom(size))
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    st = os.stat(p)
    assert st.st_size == size
    assert st.st_blksize > 0
    assert st.st_blocks > 0
    assert st.st_blocks * 512 < size + 1024 * 1024
    empty = root / "e"
    empty.write_bytes(b"")
    st = os.stat(empty)
    assert st.st_size == 0
    assert st.st_blocks >= 0


def test_st_ino_stable_across_stats(root):
    p = root / "f"
    p.write_bytes(b"x")
    (root / "d").mkdir()
    first = os.stat(p).st_ino
    for _ in range(5):
        assert os.stat(p).st_ino == first
        assert os.lstat(p).st_ino == first
    fd = os.open(p, os.O_RDWR)
    try:
        os.write(fd, b"changes")
        assert os.fstat(fd).st_ino == first
    finally:
        os.close(fd)
    os.chmod(p, 0o600)
    os.utime(p, ns=(ATIME_NS, MTIME_NS))
    assert os.stat(p).st_ino == first
    assert os.stat(root / "d").st_ino == os.stat(root / "d").st_ino


def test_distinct_files_distinct_inodes_same_device(root):
    (root / "a").write_bytes(b"")
    (root / "b").write_bytes(b"")
    (root / "d").mkdir()
    os.symlink("a", root / "l")
    sts = [os.lstat(root / n) for n in ["a", "b", "d", "l"]]
    assert len({s.st_ino for s in sts}) == 4
    root_dev = os.stat(root).st_dev
    assert all(s.st_dev == root_dev for s in sts)


def test_fstat_matches_stat(root):
    p = root / "f"
    p.write_bytes(b"hello")
    os.utime(p, ns=(ATIME_NS, MTIME_NS))
    fd = os.open(p, os.O_RDONLY)
    try:
        a = os.fstat(fd)
    finally:
        os.close(fd)
    b = os.stat(p)
    for field in (
        "st_ino",
        "st_dev",
        "st_mode",
        "st_nlink",
        "st_uid",
        "st_gid",
        "st_size",
        "st_mtime_ns",
    ):
        assert getattr(a, field) == getattr(b, field), field


# --- special files --------------------------------------------------------


def test_mkfifo_creates_fifo(root):
    p = root / "fifo"
    old = os.umask(0o022)
    try:
        os.mkfifo(p, 0o640)
    finally:
        os.umask(old)
    st = os.stat(p)  # never opened: opening a FIFO blocks
    assert stat.S_ISFIFO(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert stat.S_ISFIFO(os.lstat(p).st_mode)
    assert os.listdir(root) == ["fifo"]
    with pytest.raises(OSError) as exc:
        os.mkfifo(p)
    assert exc.value.errno == errno.EEXIST
    os.rename(p, root / "fifo2")
    assert stat.S_ISFIFO(os.stat(root / "fifo2").st_mode)
    os.unlink(root / "fifo2")
    assert os.listdir(root) == []


def test_mknod_regular_file(root):
    p = root / "node"
    os.mknod(p, stat.S_IFREG | 0o600)
    st = os.stat(p)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == 0
    assert p.read_bytes() == b""
    p.write_bytes(b"usable")
    assert p.read_bytes() == b"usable"


def test_mknod_without_type_is_regular_file(root):
    p = root / "node"
    os.mknod(p, 0o644)
    assert stat.S_ISREG(os.stat(p).st_mode)


def test_mknod_fifo(root):
    p = root / "fifo"
    os.mknod(p, stat.S_IFIFO | 0o600)
    assert stat.S_ISFIFO(os.stat(p).st_mode)


def test_mknod_existing_eexist(root):
    (root / "f").write_bytes(b"keep")
    with pytest.raises(OSError) as exc:
        os.mknod(root / "f", stat.S_IFREG | 0o600)
    assert exc.value.errno == errno.EEXIST
    assert (root / "f").read_bytes() == b"keep"
