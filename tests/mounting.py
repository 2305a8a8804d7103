"""Mount helpers for tests: every mount made here is unmounted, even when the test fails."""

from __future__ import annotations

import contextlib
import os
import pathlib

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
def mounted(fs: FileSystem, mountpoint: pathlib.Path, *, workers: int = 4,
            tuning: Tuning | None = None, options: device.MountOptions | None = None):
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
