"""The session under load and at its edges: threads, slow requests, interrupts, forgets, exit."""

import errno
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from waiting import PATIENCE, wait_until

from bridgefs.fuse import device
from bridgefs.fuse.filesystem import Context, FsError
from bridgefs.memfs import MemFS
from mounting import mounted, require_fuse


class SlowMemFS(MemFS):
    """Reads of files named ``slow*``, and lookups of such names, wait until released or
    interrupted."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.release_slow = threading.Event()
        self.slow_started = threading.Event()
        self.interrupted = threading.Event()
        self._slow = set()

    def create(self, ctx, parent, name, mode, umask, flags):
        entry, opened = super().create(ctx, parent, name, mode, umask, flags)
        if name.startswith(b"slow"):
            self._slow.add(entry.ino)
        return entry, opened

    def _wait(self, ctx):
        self.slow_started.set()
        deadline = time.monotonic() + 2 * PATIENCE  # the test releases it sooner
        while not self.release_slow.is_set() and time.monotonic() < deadline:
            if ctx.interrupted.wait(0.02):
                self.interrupted.set()
                raise FsError(errno.EINTR)

    def read(self, ctx, ino, fh, offset, size):
        if ino in self._slow:
            self._wait(ctx)
        return super().read(ctx, ino, fh, offset, size)

    def lookup(self, ctx, parent, name):
        if name.startswith(b"slow-lookup"):
            self._wait(ctx)
        return super().lookup(ctx, parent, name)


def test_eight_threads_read_and_write_their_own_files(tmp_path):
    with mounted(MemFS(), tmp_path / "m", workers=4) as s:
        errors = []

        def work(i):
            try:
                path = os.path.join(s.mountpoint, f"file{i}")
                blob = os.urandom(256 * 1024 + i)
                for _ in range(5):
                    with open(path, "wb") as f:
                        f.write(blob)
                    with open(path, "rb") as f:
                        assert f.read() == blob
            except Exception as exc:  # reported below, with the thread's number
                errors.append((i, exc))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []


def test_a_slow_request_does_not_block_a_stat(tmp_path):
    fs = SlowMemFS(keep_cache=False)
    with mounted(fs, tmp_path / "m", workers=4) as s:
        slow = os.path.join(s.mountpoint, "slow")
        with open(slow, "wb") as f:
            f.write(b"x" * 10)
        other = os.path.join(s.mountpoint, "other")
        open(other, "w").close()
        fd = os.open(slow, os.O_RDONLY | os.O_DIRECT)
        reader = threading.Thread(target=lambda: os.pread(fd, 4096, 0))
        reader.start()
        try:
            assert fs.slow_started.wait(PATIENCE)
            os.stat(other)  # answered while the read is still pending
            os.listdir(s.mountpoint)
            assert reader.is_alive()
        finally:
            fs.release_slow.set()
            reader.join(PATIENCE)
            os.close(fd)


def test_interrupt_reaches_the_filesystem(tmp_path):
    fs = SlowMemFS(keep_cache=False)
    with mounted(fs, tmp_path / "m") as s:
        # A LOOKUP waits for its answer interruptibly (reads may go out as background requests).
        slow = os.path.join(s.mountpoint, "slow-lookup")
        proc = subprocess.Popen(
            ["stat", slow], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            assert fs.slow_started.wait(PATIENCE)
            # SIGTERM, not SIGINT: a shell starting the suite in the background hands its
            # children SIGINT ignored, and an ignored signal interrupts nothing.
            proc.send_signal(signal.SIGTERM)
            assert fs.interrupted.wait(PATIENCE), "the kernel's INTERRUPT did not reach the request"
            assert proc.wait(PATIENCE) != 0
        finally:
            fs.release_slow.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _drop_kernel_caches():
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2")


def test_a_walk_of_100000_files_is_forgotten_without_leak(tmp_path):
    fs = MemFS(entry_timeout=60, attr_timeout=60)
    ctx = Context()
    for d in range(100):
        dir_ino = fs.mkdir(ctx, 1, f"d{d:02}".encode(), 0o755, 0).ino
        for i in range(1000):
            entry, opened = fs.create(ctx, dir_ino, f"f{i:04}".encode(), 0o100644, 0, os.O_WRONLY)
            fs.release(ctx, entry.ino, opened.fh, 0)
    with mounted(fs, tmp_path / "m") as s:
        counts = s.dispatcher.counts
        seen = 0
        for _root, _dirs, files in os.walk(s.mountpoint):
            seen += len(files)
        assert seen == 100_000
        # How many the kernel still holds now is not asserted: reclaim, or another process
        # dropping caches, may already have made it forget any number of them.

        def forgotten() -> bool:
            _drop_kernel_caches()
            return len(counts) == 0

        wait_until(forgotten, what="every node forgotten once the kernel dropped its caches")
        assert fs.node_count() == 100_000 + 100 + 1  # nothing freed that is still linked


def test_unlinked_file_lives_until_the_kernel_lets_go(tmp_path):
    fs = MemFS()
    with mounted(fs, tmp_path / "m") as s:
        path = os.path.join(s.mountpoint, "f")
        before = fs.node_count()
        with open(path, "wb") as f:
            f.write(b"data")
        fd = os.open(path, os.O_RDONLY)
        os.unlink(path)
        assert os.pread(fd, 10, 0) == b"data"
        os.close(fd)

        def freed() -> bool:
            _drop_kernel_caches()
            return fs.node_count() == before

        wait_until(freed, what="the unlinked file's node freed once the kernel let go")


def _run_memfs_cli(mnt):
    return subprocess.Popen(
        [sys.executable, "-m", "bridgefs", "memfs", str(mnt)], stderr=subprocess.PIPE, text=True
    )


def _wait_mounted(mnt, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if device.is_mounted(str(mnt)):
            return
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    raise AssertionError("bridgefs memfs did not mount")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_unmounts_cleanly_on_signal(tmp_path, sig):
    require_fuse()
    mnt = tmp_path / "m"
    mnt.mkdir()
    proc = _run_memfs_cli(mnt)
    try:
        _wait_mounted(mnt, proc)
        (mnt / "hello").write_text("hi")
        stats = subprocess.run(
            [sys.executable, "-m", "bridgefs", "stats", str(mnt), "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(stats.stdout)["fuse"]["CREATE"]["count"] == 1
        proc.send_signal(sig)
        assert proc.wait(15) == 0
        assert not device.is_mounted(str(mnt))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if device.is_mounted(str(mnt)):
            device.unmount(str(mnt), lazy=True)


def test_cli_detaches_a_busy_mount_with_a_warning(tmp_path):
    require_fuse()
    mnt = tmp_path / "m"
    mnt.mkdir()
    proc = _run_memfs_cli(mnt)
    holder = None
    try:
        _wait_mounted(mnt, proc)
        holder = subprocess.Popen(["sleep", "60"], cwd=mnt)  # keeps the mount busy
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        assert "busy" in proc.stderr.read()
        assert not device.is_mounted(str(mnt))
    finally:
        for p in (holder, proc):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        if device.is_mounted(str(mnt)):
            device.unmount(str(mnt), lazy=True)


@pytest.fixture
def world_visible_dir():
    """A directory outside pytest's root-only tmp tree, so another user can reach it."""
    path = tempfile.mkdtemp(prefix="bridgefs-nr-")
    os.chmod(path, 0o755)
    try:
        yield pathlib.Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_unprivileged_mount_goes_through_fusermount3(world_visible_dir):
    """A user who is not root mounts through the setuid fusermount3, which passes the fd back."""
    require_fuse()
    python = "/usr/bin/python3"  # the venv's interpreter may live under a root-only home
    if not os.path.exists("/usr/bin/fusermount3") or not os.path.exists(python):
        pytest.fail("fusermount3 (Debian fuse3) and /usr/bin/python3 are needed")
    nobody = 65534
    mnt = world_visible_dir / "m"
    mnt.mkdir()
    os.chown(mnt, nobody, nobody)
    # fusermount3 opens /dev/fuse as the calling user; some machines keep it root-only.
    old_mode = os.stat("/dev/fuse").st_mode & 0o777
    os.chmod("/dev/fuse", 0o666)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "src")
    as_nobody = ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups"]
    proc = subprocess.Popen(
        as_nobody + ["env", f"PYTHONPATH={src}", python, "-m", "bridgefs", "memfs", str(mnt)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_mounted(mnt, proc)
        out = subprocess.run(
            as_nobody + ["sh", "-c", f"echo hi > {mnt}/a && cat {mnt}/a"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert out.stdout == "hi\n", out.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert not device.is_mounted(str(mnt))
    finally:
        os.chmod("/dev/fuse", old_mode)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if device.is_mounted(str(mnt)):
            device.unmount(str(mnt), lazy=True)
