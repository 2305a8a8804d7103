"""A write the application was told succeeded is on the host, or an error says it may not be.

For each way of mounting (each WRITE waited for; write-behind with ``--no-events``; the kernel's
writeback cache), with and without fsync, a writer process writes 8 MiB in 128 KiB pieces,
carrying on past failed writes as careless programs do, and records every write it was told
succeeded and what fsync and close returned, while the host's side fails:

- full: the share is a 4 MiB tmpfs (ENOSPC);
- read-only: the share is an ext4 image that goes read-only on an error half way (EROFS, as
  ``errors=remount-ro`` does; a ``mount -o remount,ro`` is refused with EBUSY while the server
  holds the file open for writing);
- killed: the server is SIGKILLed half way.

Afterwards: if fsync returned 0, every acknowledged byte is on the host; if no call failed, the
whole file is; and since none of these faults can leave the whole file on the host, some call
must have failed.  (Quotas, EDQUOT, take the same path as ENOSPC; this kernel's tmpfs has no
quota support and the server runs as root, which quotas do not bind.)
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys

import pytest
from waiting import wait_until

from mounting import bridgefs_server, remote_mount
from remotekit import wait_events_flowing

MODES = {
    "events": [],
    "no-events": ["--no-events"],
    "writeback-cache": ["--writeback-cache"],
}
MiB = 1 << 20
TOTAL = 8 * MiB
PIECE = 128 << 10

# argv: path, total, piece, fsync (0/1), pause (bytes after which it says "paused" and waits
# for a line on stdin; 0: never).  With fsync it stops at the first failed write, as a careful
# program does before it asks fsync what became of the rest; without, it writes on regardless.
# Prints one JSON line: each write's count or -errno, what fsync (null if not called) and close
# returned (0 or errno).
WRITER = r"""
import json, os, sys
path, total, piece, do_fsync, pause = sys.argv[1], *map(int, sys.argv[2:])
def data(i):
    return (i + 1).to_bytes(4, "big") * (piece // 4)
writes = []
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(total // piece):
    if pause and i * piece == pause:
        print("paused", flush=True)
        sys.stdin.readline()
    try:
        writes.append(os.pwrite(fd, data(i), i * piece))
    except OSError as exc:
        writes.append(-exc.errno)
        if do_fsync:
            break
result = {"writes": writes, "fsync": None}
if do_fsync:
    try:
        os.fsync(fd)
        result["fsync"] = 0
    except OSError as exc:
        result["fsync"] = exc.errno
try:
    os.close(fd)
    result["close"] = 0
except OSError as exc:
    result["close"] = exc.errno
print(json.dumps(result), flush=True)
"""


def _piece(i: int) -> bytes:
    return (i + 1).to_bytes(4, "big") * (PIECE // 4)


@contextlib.contextmanager
def _served(tmp_path: pathlib.Path, host: pathlib.Path, mode: str):
    """(mount point, server process) of ``host`` mounted in ``mode``."""
    extra = MODES[mode]
    mnt = tmp_path / "mnt"
    with bridgefs_server({"share": str(host)}, f"unix:{tmp_path / 'server.sock'}") as (
        address,
        server,
    ):
        with remote_mount(address, "share", mnt, *extra):
            if "--no-events" not in extra:
                wait_events_flowing(mnt)
            yield mnt, server


@contextlib.contextmanager
def _tmpfs(where: pathlib.Path, size: str):
    where.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)], check=True
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@contextlib.contextmanager
def _ext4(tmp_path: pathlib.Path):
    """An ext4 image mounted with errors=remount-ro; yields (folder, its sysfs directory)."""
    image, where = tmp_path / "ext4.img", tmp_path / "ext4"
    where.mkdir()
    with open(image, "wb") as f:
        f.truncate(32 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(where)], check=True)
    try:
        source = subprocess.run(
            ["findmnt", "-no", "SOURCE", str(where)], capture_output=True, text=True, check=True
        ).stdout.strip()
        yield where, pathlib.Path("/sys/fs/ext4") / os.path.basename(source)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _write(path: pathlib.Path, fsync: bool, fault=None) -> dict:
    """Run the writer on ``path``; ``fault()`` is done half way, while it waits."""
    pause = TOTAL // 2 if fault else 0
    args = [sys.executable, "-c", WRITER, str(path), str(TOTAL), str(PIECE), str(int(fsync))]
    proc = subprocess.Popen(
        [*args, str(pause)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        if fault:
            assert line == "paused\n", line
            fault()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        assert proc.wait() == 0, line
        return json.loads(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def _check(result: dict, host_file: pathlib.Path) -> None:
    writes, fsync, close = result["writes"], result["fsync"], result["close"]
    on_host = host_file.read_bytes()
    acknowledged = [i for i, n in enumerate(writes) if n > 0]
    lost = [
        i
        for i in acknowledged
        if on_host[i * PIECE : i * PIECE + writes[i]] != _piece(i)[: writes[i]]
    ]
    failed = [n for n in writes if n < 0] + [e for e in (fsync, close) if e]
    summary = (
        f"{len(acknowledged)} of {len(writes)} writes acknowledged, first failure "
        f"{next((i for i, n in enumerate(writes) if n < 0), None)}, fsync {fsync}, close {close}, "
        f"{len(on_host)} bytes on the host, acknowledged pieces missing: {lost[:8]}"
        f"{'...' if len(lost) > 8 else ''}"
    )
    if fsync == 0:
        assert not lost, f"fsync returned 0 but acknowledged data is not on the host: {summary}"
    assert failed, f"no call failed, yet the host filesystem failed: {summary}"
    if lost:
        # Every loss was reported, by a write after it, by fsync or by close: the last one too.
        assert any(n < 0 for n in writes[lost[-1] + 1 :]) or fsync or close, summary


FSYNC = pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "close"])


@pytest.fixture(params=sorted(MODES))
def mode(request):
    return request.param


@FSYNC
def test_full_disk(tmp_path, mode, fsync):
    with (
        _tmpfs(tmp_path / "small", f"{TOTAL // 2}") as host,
        _served(tmp_path, host, mode) as (
            mnt,
            _server,
        ),
    ):
        result = _write(mnt / "f", fsync)
        _check(result, host / "f")


@FSYNC
def test_host_filesystem_goes_read_only(tmp_path, mode, fsync):
    with _ext4(tmp_path) as (host, sysfs), _served(tmp_path, host, mode) as (mnt, _server):

        def fault():
            (sysfs / "trigger_fs_error").write_text("test: read-only half way\n")

        result = _write(mnt / "f", fsync, fault)
        _check(result, host / "f")


@FSYNC
def test_server_killed(tmp_path, host_dir, mode, fsync):
    with _served(tmp_path, host_dir, mode) as (mnt, server):

        def fault():
            server.kill()  # by pid: the one this test started
            server.wait()

        result = _write(mnt / "f", fsync, fault)
        _check(result, host_dir / "f")


@contextlib.contextmanager
def _traced(pid: int, log: pathlib.Path):
    """strace of every thread of process ``pid``'s fsync and fdatasync calls, fds named."""
    tracer = subprocess.Popen(
        ["strace", "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync", "-o", str(log), "-p", str(pid)]
    )
    try:
        yield
    finally:
        tracer.terminate()  # detaches
        tracer.wait()


def test_fsync_and_fsyncdir_reach_the_host(tmp_path, host_dir, mode):
    # Waited on through the trace itself: the marker's fsync shows once strace is attached.
    log = tmp_path / "fsyncs.log"
    with _served(tmp_path, host_dir, mode) as (mnt, server), _traced(server.pid, log):
        (mnt / "d").mkdir()
        marker = os.open(mnt / "marker", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            wait_until(
                lambda: os.fsync(marker) or f"{host_dir}/marker>" in _read(log),
                what="the server's fsync of a marker file in the trace",
            )
        finally:
            os.close(marker)
        for name, sync in (("f", os.fsync), ("g", os.fdatasync)):
            with open(mnt / name, "wb") as f:
                f.write(b"data" * 1000)
                f.flush()
                sync(f.fileno())
        directory = os.open(mnt / "d", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    trace = _read(log)  # strace has detached (and written everything) by now
    assert f"fsync({_fd_of(trace, host_dir / 'f')}" in trace, trace
    assert f"fdatasync({_fd_of(trace, host_dir / 'g')}" in trace, trace
    assert f"fsync({_fd_of(trace, host_dir / 'd')}" in trace, trace


def _read(log: pathlib.Path) -> str:
    return log.read_text() if log.exists() else ""


def _fd_of(trace: str, path: pathlib.Path) -> str:
    """The ``N</path>`` strace names ``path``'s descriptor by, from the first call on it."""
    at = trace.find(f"<{path}>")
    assert at >= 0, f"no call on {path} in the trace:\n{trace}"
    start = trace.rfind("(", 0, at) + 1
    return trace[start : at + len(str(path)) + 2]
