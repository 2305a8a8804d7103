"""Mounts in each mode for the exercisers, and running them as programs of their own."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys

import pytest

from mounting import bridgefs_server, remote_mount
from remotekit import wait_events_flowing

REPO = pathlib.Path(__file__).resolve().parents[2]
MODES = {
    "default": [],
    "no-events": ["--no-events"],
    "writeback-cache": ["--writeback-cache"],
}


@contextlib.contextmanager
def exercise_mount(tmp_path: pathlib.Path, extra: list[str]):
    """(host folder, mount point) of a fresh share mounted with ``extra`` options; host
    changes flow (long caches on) before it is handed out, unless ``--no-events``."""
    host = tmp_path / "host"
    host.mkdir()
    mnt = tmp_path / "mnt"
    with bridgefs_server({"share": str(host)}, f"unix:{tmp_path / 'server.sock'}") as (
        address,
        _server,
    ):
        with remote_mount(address, "share", mnt, *extra):
            if "--no-events" not in extra:
                wait_events_flowing(mnt)
            yield host, mnt


def ops_from_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def run_exerciser(module: str, args: list[str], timeout: float) -> str:
    """Run ``python -m tests.exercise.MODULE ARGS``; fail the test with its output unless it
    exits 0; return what it printed."""
    cmd = [sys.executable, "-m", f"tests.exercise.{module}", *args]
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s\n{exc.stderr or ''}")
    if done.returncode != 0:
        how = f"exited with {done.returncode}"
        if done.returncode == -signal.SIGBUS:
            how = "was killed by SIGBUS (a mapped page past the file's end: its size shrank)"
        pytest.fail(f"{' '.join(cmd)} {how}\n{done.stdout}\n{done.stderr}", pytrace=False)
    return done.stdout
