"""Mount helpers for tests: every mount made here is unmounted, even when the test fails."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from bridgefs.fuse import device
from bridgefs.fuse.filesystem import FileSystem
from bridgefs.fuse.negotiate import Tuning
from bridgefs.fuse.session import Session


def require_fuse() -> None:
    """FUSE tests run as root with /dev/fuse; in CI a missing FUSE is a failure, never a skip."""
    problem = None
    if not os.path.exists("/dev/fuse"):
        problem = "/dev/fuse is missing"
    elif os.geteuid() != 0:
        problem = "FUSE tests mount with mount(2) and need root"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}: FUSE tests may not be skipped in CI")
        pytest.skip(problem)


@contextlib.contextmanager
def mounted(
    fs: FileSystem,
    mountpoint: pathlib.Path,
    *,
    workers: int = 4,
    tuning: Tuning | None = None,
    options: device.MountOptions | None = None,
):
    require_fuse()
    mountpoint.mkdir(parents=True, exist_ok=True)
    session = Session(fs, str(mountpoint), workers=workers, tuning=tuning, options=options)
    try:
        session.start()
        assert session.wait_ready(10), "the kernel did not send INIT"
        yield session
    finally:
        session.close()
        if device.is_mounted(str(mountpoint)):
            device.unmount(str(mountpoint), lazy=True)


def wait_mounted(mountpoint: pathlib.Path, proc: subprocess.Popen, timeout: float = 20) -> None:
    """Wait for the mount to appear (read from the mount table: a stat could wait on INIT)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if device.is_mounted(str(mountpoint)):
            return
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode}")
        time.sleep(0.05)
    raise AssertionError(f"{proc.args} did not mount {mountpoint}")


@contextlib.contextmanager
def mounted_by(args: list[str], mountpoint: pathlib.Path, timeout: float = 20):
    """Run ``bridgefs ARGS`` in its own process (as in real use: no interpreter lock shared with
    the test, whose memory-mapped page faults would otherwise stall it) until the test ends."""
    require_fuse()
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "bridgefs", *args])
    try:
        wait_mounted(mountpoint, proc, timeout)
        yield proc
    finally:
        stop_process(proc)
        if device.is_mounted(str(mountpoint)):
            device.unmount(str(mountpoint), lazy=True)


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def bridgefs_server(
    shares: dict[str, str],
    listen: str,
    wrap: list[str] | None = None,
    options: list[str] | None = None,
):
    """`bridgefs serve` in its own process; yields the bound address (tcp port 0 resolved).

    ``wrap`` prefixes the command (e.g. unshare, to give the server a view of its own);
    ``options`` are more `bridgefs serve` options (limits, say)."""
    args = [sys.executable, "-m", "bridgefs", "serve", "--listen", listen, *(options or [])]
    if listen.startswith(("tcp:", "vsock:")) and "--token-file" not in (options or []):
        args.append("--insecure")  # loopback in a test: no token unless the test gives one
    for name, path in shares.items():
        args += ["--share", f"{name}={path}"]
    proc = subprocess.Popen((wrap or []) + args, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, f"server did not start: {line!r}"
        yield line.split("listening on", 1)[1].strip(), proc
    finally:
        stop_process(proc)
        proc.stdout.close()


@contextlib.contextmanager
def remote_mount(address: str, share: str, mountpoint: pathlib.Path, *extra: str):
    """`bridgefs mount --foreground` of a served share; always unmounted afterwards."""
    with mounted_by(
        ["mount", address, share, str(mountpoint), "--foreground", *extra], mountpoint
    ) as proc:
        yield proc
