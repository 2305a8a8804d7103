"""Memory mapping and file locking."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import subprocess
import sys
import textwrap

import pytest

PAGE = mmap.PAGESIZE


# --- mmap -----------------------------------------------------------------
#
# Every access to mapped memory happens in a child process.  Touching a
# mapping triggers page faults that the filesystem must serve; when the
# filesystem under test is served by threads of this very process (an
# in-process FUSE server), a memcpy into the mapping done while holding the
# GIL would deadlock against those threads.  System calls made through os.*
# release the GIL, so the parent only verifies with pread()/read().

_MMAP_PRELUDE = textwrap.dedent(
    """
    import mmap, os, sys
    PAGE = mmap.PAGESIZE
    path = sys.argv[1]
    """
)


def _in_child(script, *args):
    out = subprocess.run(
        [sys.executable, "-c", _MMAP_PRELUDE + textwrap.dedent(script), *map(str, args)],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out.stdout


def test_mmap_shared_write_msync_read_back(root):
    p = root / "f"
    size = 3 * PAGE + 100
    p.write_bytes(b"." * size)
    _in_child(
        """
        size = int(sys.argv[2])
        fd = os.open(path, os.O_RDWR)
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[0:5] = b"HELLO"
            m[PAGE - 2 : PAGE + 2] = b"SPAN"
            m[size - 3 : size] = b"END"
            m.flush()  # msync(MS_SYNC)
            assert os.pread(fd, 5, 0) == b"HELLO"
            assert os.pread(fd, 4, PAGE - 2) == b"SPAN"
        os.close(fd)
        """,
        p,
        size,
    )
    expected = bytearray(b"." * size)
    expected[0:5] = b"HELLO"
    expected[PAGE - 2 : PAGE + 2] = b"SPAN"
    expected[size - 3 : size] = b"END"
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.read(fd, size + 10) == bytes(expected)
    finally:
        os.close(fd)
    assert os.stat(p).st_size == size


def test_mmap_shared_write_visible_after_unmap_without_msync(root):
    p = root / "f"
    p.write_bytes(bytes(PAGE))
    _in_child(
        """
        fd = os.open(path, os.O_RDWR)
        m = mmap.mmap(fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        m[100:104] = b"data"
        m.close()
        os.close(fd)
        """,
        p,
    )
    assert p.read_bytes()[100:104] == b"data"


def test_mmap_sees_write_made_through_fd(root):
    p = root / "f"
    p.write_bytes(bytes(2 * PAGE))
    out = _in_child(
        """
        fd = os.open(path, os.O_RDWR)
        with mmap.mmap(fd, 2 * PAGE, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            assert m[PAGE : PAGE + 5] == bytes(5)
            os.pwrite(fd, b"fresh", PAGE)
            sys.stdout.buffer.write(m[PAGE : PAGE + 5])
        os.close(fd)
        """,
        p,
    )
    assert out == b"fresh"


def test_mmap_readonly_sees_content(root):
    p = root / "f"
    data = os.urandom(2 * PAGE + 1234)
    p.write_bytes(data)
    out = _in_child(
        """
        fd = os.open(path, os.O_RDONLY)
        with mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            sys.stdout.buffer.write(m[:])
        os.close(fd)
        """,
        p,
    )
    assert len(out) == len(data)
    assert out == data


def test_mmap_readonly_with_offset(root):
    p = root / "f"
    data = os.urandom(4 * PAGE)
    p.write_bytes(data)
    out = _in_child(
        """
        fd = os.open(path, os.O_RDONLY)
        with mmap.mmap(fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ, offset=2 * PAGE) as m:
            sys.stdout.buffer.write(m[:])
        os.close(fd)
        """,
        p,
    )
    assert out == data[2 * PAGE : 3 * PAGE]


def test_mmap_private_write_does_not_reach_file(root):
    p = root / "f"
    p.write_bytes(b"original" + bytes(PAGE - 8))
    out = _in_child(
        """
        fd = os.open(path, os.O_RDONLY)
        with mmap.mmap(fd, PAGE, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[0:8] = b"modified"
            sys.stdout.buffer.write(m[0:8])
        os.close(fd)
        """,
        p,
    )
    assert out == b"modified"
    assert p.read_bytes()[:8] == b"original"


def test_mmap_shared_writable_on_readonly_fd_eacces(root):
    p = root / "f"
    p.write_bytes(bytes(PAGE))
    # mmap(2) itself touches no pages, so this one is safe in-process
    fd = os.open(p, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as exc:
            mmap.mmap(fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        assert exc.value.errno == errno.EACCES
    finally:
        os.close(fd)


# --- locks ----------------------------------------------------------------


def test_flock_exclusive_lock_unlock(root):
    p = root / "f"
    p.write_bytes(b"x")
    fd = os.open(p, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        fcntl.flock(fd, fcntl.LOCK_UN)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_SH)  # conversion
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def test_flock_conflict_between_open_files(root):
    p = root / "f"
    p.write_bytes(b"x")
    a = os.open(p, os.O_RDWR)
    b = os.open(p, os.O_RDWR)
    try:
        fcntl.flock(a, fcntl.LOCK_EX)
        with pytest.raises(OSError) as exc:
            fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert exc.value.errno == errno.EWOULDBLOCK
        with pytest.raises(OSError) as exc:
            fcntl.flock(b, fcntl.LOCK_SH | fcntl.LOCK_NB)
        assert exc.value.errno == errno.EWOULDBLOCK
        fcntl.flock(a, fcntl.LOCK_UN)
        fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(b, fcntl.LOCK_UN)
        # shared locks are compatible
        fcntl.flock(a, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(b, fcntl.LOCK_SH | fcntl.LOCK_NB)
    finally:
        os.close(a)
        os.close(b)


def test_lockf_exclusive_lock_unlock(root):
    p = root / "f"
    p.write_bytes(b"0123456789")
    fd = os.open(p, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 4, 2)  # bytes 2..5
        fcntl.lockf(fd, fcntl.LOCK_UN, 4, 2)
    finally:
        os.close(fd)


_LOCK_PROBE = textwrap.dedent(
    """
    import errno, fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR)
    start, length = int(sys.argv[2]), int(sys.argv[3])
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start)
    except OSError as e:
        print(errno.errorcode[e.errno])
    else:
        print("LOCKED")
    """
)


def _probe_lock(path, start=0, length=0):
    out = subprocess.run(
        [sys.executable, "-c", _LOCK_PROBE, str(path), str(start), str(length)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def test_lockf_conflict_with_other_process(root):
    p = root / "f"
    p.write_bytes(b"0123456789")
    fd = os.open(p, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX, 5, 0)  # bytes 0..4
        assert _probe_lock(p, 0, 1) in ("EAGAIN", "EACCES")
        assert _probe_lock(p, 0, 0) in ("EAGAIN", "EACCES")  # whole file overlaps
        assert _probe_lock(p, 5, 5) == "LOCKED"  # disjoint range is free
        fcntl.lockf(fd, fcntl.LOCK_UN, 5, 0)
        assert _probe_lock(p, 0, 1) == "LOCKED"
    finally:
        os.close(fd)


def test_posix_lock_released_on_close(root):
    p = root / "f"
    p.write_bytes(b"x")
    fd = os.open(p, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    assert _probe_lock(p) in ("EAGAIN", "EACCES")
    os.close(fd)
    assert _probe_lock(p) == "LOCKED"
