"""The commands as a user runs them: `bridgefs run HOSTDIR MNT` until Ctrl-C, and `bridgefs
mount` in the background followed by `bridgefs umount`."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from bridgefs.fuse import device
from mounting import bridgefs_server, mounted_by, require_fuse
from remotekit import bridgefs_cli, children_of, cmdline, poll, process_state


def _gone(pid: int, argv: list[str] | None) -> bool:
    """Whether the process ``pid`` that ran ``argv`` has exited (gone, a zombie, or the pid
    now belongs to another program)."""
    state = process_state(pid)
    return state is None or state == "Z" or cmdline(pid) != argv


def test_run_shares_until_sigint_and_leaves_nothing(tmp_path, host_dir):
    (host_dir / "existing").write_bytes(b"on the host\n")
    mnt = tmp_path / "mnt"
    with mounted_by(["run", str(host_dir), str(mnt)], mnt) as proc:
        # The run's own server: a child process listening in a private /tmp/bridgefs-run-* dir.
        kids = poll(lambda: children_of(proc.pid), what="the run's server process")
        argvs = {pid: cmdline(pid) for pid in kids}
        servers = [pid for pid, argv in argvs.items() if argv and "serve" in argv]
        assert len(servers) == 1, argvs
        listen = argvs[servers[0]][argvs[servers[0]].index("--listen") + 1]
        private = os.path.dirname(listen.removeprefix("unix:"))
        assert os.path.basename(private).startswith("bridgefs-run-"), listen
        assert os.path.isdir(private)

        assert device.is_mounted(str(mnt))
        assert os.listdir(mnt) == ["existing"]
        assert (mnt / "existing").read_bytes() == b"on the host\n"
        (mnt / "written").write_bytes(b"through the mount\n")
        assert (host_dir / "written").read_bytes() == b"through the mount\n"

        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0

    assert not device.is_mounted(str(mnt))
    assert not os.path.exists(private), f"{private} was left behind"
    left = {pid: argvs[pid] for pid in kids if not _gone(pid, argvs[pid])}
    assert not left, f"processes of the run still alive: {left}"
    assert (host_dir / "written").read_bytes() == b"through the mount\n"
    assert sorted(os.listdir(host_dir)) == ["existing", "written"]


# Holds a file of the mount open; on a line from stdin reads it again (past the page cache).
HOLDER = r"""
import json, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(os.pread(fd, 100, 0).decode(), end="", flush=True)
sys.stdin.readline()
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
try:
    print(json.dumps({"data": os.pread(fd, 100, 0).decode()}), flush=True)
except OSError as exc:
    print(json.dumps({"errno": exc.errno}), flush=True)
"""


def test_run_sigint_while_busy_detaches_and_leaves_nothing(tmp_path, host_dir):
    """Ctrl-C while a process still has a file open: the run detaches the mount, exits 0, and
    the process's later reads fail (ENOTCONN) instead of hanging."""
    (host_dir / "f").write_text("busy\n")
    mnt = tmp_path / "mnt"
    holder = None
    with mounted_by(["run", str(host_dir), str(mnt)], mnt) as proc:
        kids = poll(lambda: children_of(proc.pid), what="the run's server process")
        argvs = {pid: cmdline(pid) for pid in kids}
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(mnt / "f")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout.readline() == "busy\n"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0
            assert not device.is_mounted(str(mnt))
            holder.stdin.write("again\n")
            holder.stdin.flush()
            try:
                out, _ = holder.communicate(timeout=35)
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"the read inside the detached mount did not return "
                    f"(state {process_state(holder.pid)})"
                )
            assert json.loads(out) in ({"errno": errno.ENOTCONN}, {"errno": errno.EIO}), out
        finally:
            if holder.poll() is None:
                holder.kill()
            holder.communicate()
    left = {pid: argvs[pid] for pid in kids if not _gone(pid, argvs[pid])}
    assert not left, f"processes of the run still alive: {left}"
    assert (host_dir / "f").read_text() == "busy\n"


def test_run_refuses_a_missing_folder(tmp_path):
    require_fuse()
    (tmp_path / "mnt").mkdir()
    done = bridgefs_cli("run", str(tmp_path / "no-such-dir"), str(tmp_path / "mnt"), timeout=60)
    assert done.returncode != 0
    assert "no-such-dir" in done.stderr
    assert not device.is_mounted(str(tmp_path / "mnt"))


def _background_pid(stderr: str) -> int:
    found = re.search(r"\(pid (\d+),", stderr)
    assert found, f"no pid in the output of bridgefs mount: {stderr!r}"
    return int(found.group(1))


def test_background_mount_then_umount(tmp_path, host_dir):
    require_fuse()
    (host_dir / "f").write_bytes(b"hello\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    pid = None
    argv = None
    with bridgefs_server({"share": str(host_dir)}, f"unix:{tmp_path / 'server.sock'}") as (
        address,
        _server,
    ):
        try:
            done = bridgefs_cli("mount", address, "share", str(mnt), timeout=60)
            assert done.returncode == 0, done.stderr
            # It returned with the mount up, served by a process that outlives the command.
            assert device.is_mounted(str(mnt))
            pid = _background_pid(done.stderr)
            argv = cmdline(pid)
            assert argv is not None and "--foreground" in argv, argv
            assert process_state(pid) not in (None, "Z")
            assert (mnt / "f").read_bytes() == b"hello\n"
            (mnt / "g").write_bytes(b"from the mount\n")
            assert (host_dir / "g").read_bytes() == b"from the mount\n"

            # A busy mount is not unmounted; the command says why and fails.
            with open(mnt / "f", "rb"):
                busy = bridgefs_cli("umount", str(mnt))
                assert busy.returncode == 1
                assert "busy" in busy.stderr.lower()
                assert device.is_mounted(str(mnt))

            done = bridgefs_cli("umount", str(mnt))
            assert done.returncode == 0, done.stderr
            assert not device.is_mounted(str(mnt))
            poll(lambda: _gone(pid, argv), timeout=30, what="the background mount process exits")
            assert os.listdir(mnt) == []  # the bare mount point again
        finally:
            if device.is_mounted(str(mnt)):
                device.unmount(str(mnt), lazy=True)
            if pid is not None and not _gone(pid, argv):
                os.kill(pid, signal.SIGKILL)


def test_background_mount_of_unknown_share_fails(tmp_path, host_dir):
    require_fuse()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with bridgefs_server({"share": str(host_dir)}, f"unix:{tmp_path / 'server.sock'}") as (
        address,
        _server,
    ):
        try:
            done = bridgefs_cli("mount", address, "nope", str(mnt), timeout=60)
            assert done.returncode != 0
            assert "nope" in done.stderr
            assert not device.is_mounted(str(mnt))
        finally:
            if device.is_mounted(str(mnt)):
                device.unmount(str(mnt), lazy=True)


def test_background_mount_then_lazy_umount_while_busy(tmp_path, host_dir):
    require_fuse()
    (host_dir / "f").write_bytes(b"kept open\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    pid = argv = None
    with bridgefs_server({"share": str(host_dir)}, f"unix:{tmp_path / 'server.sock'}") as (
        address,
        _server,
    ):
        try:
            done = bridgefs_cli("mount", address, "share", str(mnt), timeout=60)
            assert done.returncode == 0, done.stderr
            pid = _background_pid(done.stderr)
            argv = cmdline(pid)
            f = open(mnt / "f", "rb")
            try:
                lazy = bridgefs_cli("umount", "--lazy", str(mnt))
                assert lazy.returncode == 0, lazy.stderr
                assert not device.is_mounted(str(mnt))
                # The open file is still served until it is closed.
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                assert f.read() == b"kept open\n"
            finally:
                f.close()
            poll(lambda: _gone(pid, argv), timeout=30, what="the background mount process exits")
        finally:
            if device.is_mounted(str(mnt)):
                device.unmount(str(mnt), lazy=True)
            if pid is not None and not _gone(pid, argv):
                os.kill(pid, signal.SIGKILL)
