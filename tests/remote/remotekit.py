"""Helpers for the end-to-end tests on real remote mounts (tests/remote)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from typing import TypeVar

import pytest
from waiting import PATIENCE, wait_until

T = TypeVar("T")

# How long a host-side change may take to show through a mount before the test fails.  The
# default 1 s entry and attribute timeouts decide how soon it shows; this only bounds a failure,
# and is generous so that a loaded machine never reaches it.
FRESHNESS = PATIENCE


def listen_address(transport: str, tmp_path: pathlib.Path) -> str:
    """Where a test's server listens: a unix socket in ``tmp_path``, or a free loopback port."""
    return f"unix:{tmp_path / 'server.sock'}" if transport == "unix" else "tcp:127.0.0.1:0"


def poll(check: Callable[[], T], timeout: float = FRESHNESS, what: str = "condition") -> T:
    """Call ``check`` until it returns something true (an OSError counts as false); return it.

    Fails the test with ``what`` and the last value or error seen once ``timeout`` passes."""
    return wait_until(check, timeout, what, every=0.05)


def require_program(name: str, package: str) -> str:
    """The path of ``name``; a missing program fails the test (never skips) naming its package."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name!r} is not installed: install the Debian package {package!r} "
            f"(scripts/setup.sh does)"
        )
    return path


def run(
    cmd: list[str],
    cwd: os.PathLike | str | None = None,
    timeout: float = 120,
    env: dict | None = None,
    input: str | None = None,
) -> str:
    """Run a program to completion; fail the test with its output if it exits non-zero."""
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, input=input
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{cmd} in {cwd} exited with {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc.stdout


def git_env(home: pathlib.Path) -> dict:
    """An environment in which git ignores the machine's configuration and has an identity."""
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_AUTHOR_NAME="Test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="Test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        LC_ALL="C",
    )
    return env


def snapshot(root: pathlib.Path, *, with_atime: bool = False) -> dict:
    """Everything about a host tree a mutation could change: per path the type, mode, uid, gid,
    size, mtime_ns, ctime_ns, inode, link count, content (file) or target (symlink), xattrs."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *sorted(dirnames), *sorted(filenames)]:
            p = os.path.normpath(os.path.join(dirpath, name))
            st = os.lstat(p)
            rec = {
                "mode": st.st_mode,
                "uid": st.st_uid,
                "gid": st.st_gid,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "ctime_ns": st.st_ctime_ns,
                "ino": st.st_ino,
                "nlink": st.st_nlink,
            }
            if with_atime:
                rec["atime_ns"] = st.st_atime_ns
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    rec["data"] = f.read()
            elif stat.S_ISLNK(st.st_mode):
                rec["target"] = os.readlink(p)
            if not stat.S_ISLNK(st.st_mode):
                rec["xattrs"] = {n: os.getxattr(p, n) for n in sorted(os.listxattr(p))}
            out[os.path.relpath(p, root)] = rec
    return out


def process_state(pid: int) -> str | None:
    """The one-letter state of a process (R, S, D, Z, ...) from /proc/PID/stat; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(")") + 2]


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's children list)."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
        except FileNotFoundError:
            pass
    return kids


def cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (FileNotFoundError, ProcessLookupError):
        return None


def bridgefs_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``bridgefs ARGS`` as a command (a process of its own), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "bridgefs", *args], capture_output=True, text=True, timeout=timeout
    )


def mount_status(mountpoint: os.PathLike | str) -> dict:
    """What `bridgefs status MNT --json` prints: whether host changes flow, the cache mode."""
    done = bridgefs_cli("status", str(mountpoint), "--json", timeout=30)
    if done.returncode != 0:
        pytest.fail(f"bridgefs status {mountpoint} failed: {done.stderr}")
    return json.loads(done.stdout)


def wait_events_flowing(mountpoint: os.PathLike | str, timeout: float = 10.0) -> None:
    """Wait until the mount follows the server's change stream (long-lived caches on)."""
    poll(
        lambda: mount_status(mountpoint).get("events") == "flowing",
        timeout=timeout,
        what=f"the change stream of {mountpoint} flows",
    )
