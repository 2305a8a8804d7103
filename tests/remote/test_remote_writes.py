"""What a writer through the mount may rely on, however the client sends its writes.

By default (host changes followed: no-open mode) each WRITE waits for the server's answer.  With
``--no-events`` files are opened, the kernel sends FLUSH on close, and a WRITE is answered as
soon as the client has queued it (client/writes.py).  With ``--writeback-cache`` the kernel keeps
the writes in its page cache and sends them later.  In every mode:

- after close, and after fsync, every byte is on the host disk;
- the VM sees its own writes at once (size, contents), before any close;
- a failed write is reported by a later write, by fsync or by close: never lost.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import subprocess
import sys

import pytest
from waiting import PATIENCE

from bridgefs.fuse import device
from mounting import bridgefs_server, remote_mount
from remotekit import FRESHNESS, poll, wait_events_flowing

MODES = {
    "events": [],
    "no-events": ["--no-events"],
    "writeback-cache": ["--writeback-cache"],
}
MiB = 1 << 20


@contextlib.contextmanager
def _mounted(tmp_path, host, extra):
    mnt = tmp_path / "mnt"
    with bridgefs_server({"share": str(host)}, f"unix:{tmp_path / 'server.sock'}") as (
        address,
        _server,
    ):
        with remote_mount(address, "share", mnt, *extra):
            if "--no-events" not in extra:
                wait_events_flowing(mnt)
            yield mnt


@pytest.fixture(params=sorted(MODES))
def writes_share(request, tmp_path, host_dir):
    with _mounted(tmp_path, host_dir, MODES[request.param]) as mnt:
        yield host_dir, mnt


@pytest.fixture(params=sorted(MODES))
def full_share(request, tmp_path):
    """(host folder, mount point) of a share on a 1 MiB tmpfs: writes past that fail ENOSPC."""
    host = tmp_path / "small"
    host.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(host)], check=True
    )
    try:
        with _mounted(tmp_path, host, MODES[request.param]) as mnt:
            yield host, mnt
    finally:
        subprocess.run(["umount", "-l", str(host)], check=False)


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def test_many_writes_are_on_the_host_after_close(writes_share):
    host, mnt = writes_share
    data = bytearray(_data(9 * MiB + 123, 1))
    fd = os.open(mnt / "big", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for i in range(0, len(data), MiB):
            assert os.write(fd, data[i : i + MiB]) == len(data[i : i + MiB])
        # Overlapping rewrites, sent while the first writes may still be on their way: the
        # host must end with the last bytes written at each offset.
        for n, start in enumerate(range(1000, 8 * MiB, 700_001)):
            patch = bytes([n + 1]) * 900_000
            assert os.pwrite(fd, patch, start) == len(patch)
            data[start : start + len(patch)] = patch
        # The VM sees its own writes before any close.
        assert os.fstat(fd).st_size == len(data)
        assert os.stat(mnt / "big").st_size == len(data)
        with open(mnt / "big", "rb") as f:
            assert f.read() == bytes(data)
    finally:
        os.close(fd)
    assert (host / "big").stat().st_size == len(data)
    assert (host / "big").read_bytes() == bytes(data)


def test_writes_are_on_the_host_after_fsync_before_close(writes_share):
    host, mnt = writes_share
    data = _data(3 * MiB + 5, 2)
    with open(mnt / "f", "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        assert (host / "f").read_bytes() == data
        f.write(b"more")
        f.flush()
        os.fdatasync(f.fileno())
        assert (host / "f").read_bytes() == data + b"more"


def test_host_sees_a_rename_after_the_data_it_names(writes_share):
    # The usual atomic save: write a temporary file, rename it over the real one.
    host, mnt = writes_share
    for i in range(5):
        data = _data(2 * MiB, 10 + i)
        with open(mnt / "tmp", "wb") as f:
            f.write(data)
        os.rename(mnt / "tmp", mnt / "saved")
        assert (host / "saved").read_bytes() == data


def _write_past_full(path, size: int, piece: int, fsync: bool) -> list[tuple[str, int]]:
    """Write ``size`` bytes in ``piece``-byte writes (the rest of a short one written again, as
    programs do), then fsync (if asked) and close; the failures seen, as (call, errno), in order
    (writing stops at the first failed write)."""
    failures = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(b"x" * size)
        done = 0
        while done < size:
            try:
                done += os.write(fd, view[done : done + piece])
            except OSError as exc:
                failures.append(("write", exc.errno))
                break
        if fsync:
            try:
                os.fsync(fd)
            except OSError as exc:
                failures.append(("fsync", exc.errno))
    finally:
        try:
            os.close(fd)
        except OSError as exc:
            failures.append(("close", exc.errno))
    return failures


# 128 KiB pieces: the failure is most often reported by a later write.  One 2 MiB write: the
# kernel sends it as two WRITEs and nothing comes after them but the fsync or the close.
PIECES = pytest.mark.parametrize(
    "size,piece", [(4 * MiB, 128 << 10), (2 * MiB, 2 * MiB)], ids=["pieces", "one-write"]
)


@PIECES
def test_a_failed_write_is_reported_by_close(full_share, size, piece):
    host, mnt = full_share
    failures = _write_past_full(mnt / "f", size, piece, fsync=False)
    assert failures, f"{size} bytes went into a 1 MiB filesystem without an error"
    assert failures[0][1] in (errno.ENOSPC, errno.EFBIG), failures


@PIECES
def test_a_failed_write_is_reported_by_fsync(full_share, size, piece):
    host, mnt = full_share
    failures = _write_past_full(mnt / "f", size, piece, fsync=True)
    assert failures, f"{size} bytes went into a 1 MiB filesystem without an error"
    call, err = failures[0]
    assert call in ("write", "fsync"), failures  # not left for close to tell
    assert err in (errno.ENOSPC, errno.EFBIG), failures


def test_writeback_cache_without_events_is_refused(tmp_path, host_dir):
    # The kernel trusts its own size and mtime of a file it caches for writeback (fs/fuse:
    # fuse_get_cache_mask); without events nothing would tell it that the host appended.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridgefs",
            "run",
            "--writeback-cache",
            "--no-events",
            str(host_dir),
            str(tmp_path / "mnt"),
        ],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert proc.returncode == 2
    assert "--writeback-cache needs host changes followed" in proc.stderr
    assert not device.is_mounted(str(tmp_path / "mnt"))


def test_writeback_cache_and_a_host_append(tmp_path, host_dir):
    (host_dir / "log").write_bytes(b"first line\n")
    with _mounted(tmp_path, host_dir, ["--writeback-cache"]) as mnt:
        assert (mnt / "log").read_bytes() == b"first line\n"
        with open(host_dir / "log", "ab") as f:
            f.write(b"appended on the host\n")
        want = b"first line\nappended on the host\n"
        poll(
            lambda: (
                os.stat(mnt / "log").st_size == len(want) and (mnt / "log").read_bytes() == want
            ),
            timeout=FRESHNESS,
            what="the host's append seen in the VM",
        )


def test_a_failed_write_is_reported_by_fsync_through_another_descriptor(full_share):
    # Programs may write through one descriptor and make the file durable through another.
    host, mnt = full_share
    failures = []
    writer = os.open(mnt / "f", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    syncer = os.open(mnt / "f", os.O_RDONLY)
    try:
        view = memoryview(b"y" * (2 * MiB))
        done = 0
        while done < len(view):
            try:
                done += os.write(writer, view[done:])
            except OSError as exc:
                failures.append(("write", exc.errno))
                break
        try:
            os.fsync(syncer)
        except OSError as exc:
            failures.append(("fsync", exc.errno))
    finally:
        for fd in (syncer, writer):
            try:
                os.close(fd)
            except OSError as exc:
                failures.append(("close", exc.errno))
    assert failures, "2 MiB went into a 1 MiB filesystem without an error"
    call, err = failures[0]
    assert call in ("write", "fsync") and err in (errno.ENOSPC, errno.EFBIG), failures
