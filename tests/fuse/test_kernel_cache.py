"""The kernel cache does what each answer asks for, seen from the requests memfs receives."""

import mmap
import os

import pytest

from bridgefs.memfs import MemFS
from mounting import mounted


def _read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("keep_cache", [True, False])
def test_keep_cache_spares_the_second_read(tmp_path, keep_cache):
    fs = MemFS(keep_cache=keep_cache, entry_timeout=60, attr_timeout=60)
    with mounted(fs, tmp_path / "m") as s:
        path = os.path.join(s.mountpoint, "f")
        with open(path, "wb") as f:
            f.write(os.urandom(64 * 1024))
        first = _read(path)
        s.reset_stats()
        assert _read(path) == first
        reads = s.count("READ")
    if keep_cache:
        assert reads == 0
    else:
        assert reads >= 1  # the control: without the flag the open drops the pages


@pytest.mark.parametrize("cache_dir", [True, False])
def test_cache_dir_spares_the_second_listing(tmp_path, cache_dir):
    fs = MemFS(cache_dir=cache_dir, entry_timeout=60, attr_timeout=60)
    with mounted(fs, tmp_path / "m") as s:
        for i in range(50):
            open(os.path.join(s.mountpoint, f"f{i}"), "w").close()
        first = sorted(os.listdir(s.mountpoint))
        s.reset_stats()
        assert sorted(os.listdir(s.mountpoint)) == first
        listings = s.count("READDIR") + s.count("READDIRPLUS")
    assert (listings == 0) == cache_dir


def test_long_entry_timeout_spares_lookup_and_getattr(tmp_path):
    fs = MemFS(entry_timeout=60, attr_timeout=60)
    with mounted(fs, tmp_path / "m") as s:
        path = os.path.join(s.mountpoint, "f")
        open(path, "w").close()
        os.stat(path)
        s.reset_stats()
        os.stat(path)
        assert s.count("LOOKUP") == 0 and s.count("GETATTR") == 0


def test_zero_timeout_asks_again(tmp_path):
    fs = MemFS(entry_timeout=0, attr_timeout=0)
    with mounted(fs, tmp_path / "m") as s:
        path = os.path.join(s.mountpoint, "f")
        open(path, "w").close()
        os.stat(path)
        s.reset_stats()
        os.stat(path)
        assert s.count("LOOKUP") + s.count("GETATTR") >= 1


class RecordingMemFS(MemFS):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.read_sizes = []

    def read(self, ctx, ino, fh, offset, size):
        self.read_sizes.append(size)
        return super().read(ctx, ino, fh, offset, size)


def test_one_mib_read_is_one_request(tmp_path):
    fs = RecordingMemFS()
    with mounted(fs, tmp_path / "m") as s:
        path = os.path.join(s.mountpoint, "big")
        with open(path, "wb") as f:
            f.write(os.urandom(4 << 20))
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, 1 << 20)  # page-aligned, as O_DIRECT wants
        try:
            fs.read_sizes.clear()
            n = os.preadv(fd, [buf], 1 << 20)
        finally:
            os.close(fd)
    assert n == 1 << 20
    assert fs.read_sizes == [1 << 20]


def test_sequential_reads_arrive_as_one_mib_requests(tmp_path):
    """The read-ahead the mount agreed to is the one the kernel uses: a buffered sequential read
    reaches the filesystem in 1 MiB requests, not the kernel's default 128 KiB."""
    fs = RecordingMemFS()
    with mounted(fs, tmp_path / "m") as s:
        path = os.path.join(s.mountpoint, "big")
        with open(path, "wb") as f:
            f.write(os.urandom(8 << 20))
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the written pages go
            fs.read_sizes.clear()
            while os.read(fd, 1 << 20):
                pass
        finally:
            os.close(fd)
    assert sum(fs.read_sizes) >= 8 << 20
    assert max(fs.read_sizes) == 1 << 20
    assert len(fs.read_sizes) <= 12
