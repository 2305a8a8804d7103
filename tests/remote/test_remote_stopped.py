"""A server stopped (SIGSTOP) under a mount: programs waiting on it can be killed, and once it is
continued everything goes on without an error.

While a FUSE request is with the client, the kernel waits for its answer uninterruptibly, even
for SIGKILL (it only sends an INTERRUPT): the client itself must answer an interrupted request
that the server does not answer, or the program stays in D state for as long as the call may
take.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

from waiting import PATIENCE, wait_until

from mounting import bridgefs_server, remote_mount

# As long as a user might stop a server, say to debug it: longer than a call's old 30 s bound.
STOP_SECONDS = 35


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _waiting_on_fuse(pid: int) -> bool:
    with open(f"/proc/{pid}/wchan") as f:
        return f.read() == "request_wait_answer"


@contextlib.contextmanager
def _stopped(server: subprocess.Popen):
    """The server stopped for the block; continued afterwards, whatever happens."""
    os.kill(server.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: _state(server.pid) == "T", what="server stopped")
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


@contextlib.contextmanager
def _share(tmp_path: pathlib.Path, host: pathlib.Path):
    mnt = tmp_path / "mnt"
    with bridgefs_server({"share": str(host)}, f"unix:{tmp_path / 'server.sock'}") as (
        address,
        server,
    ):
        with remote_mount(address, "share", mnt):
            yield mnt, server


# More programs than the mount's 8 workers: each one the server does not answer holds a worker,
# and the INTERRUPT of a killed one must still be read.
READERS = 12


def test_programs_waiting_on_a_stopped_server_can_be_killed(tmp_path, host_dir):
    for i in range(READERS):
        (host_dir / f"unread{i}").write_bytes(b"x" * 4096)
    with _share(tmp_path, host_dir) as (mnt, server):
        with _stopped(server):
            readers = [
                subprocess.Popen(["cat", str(mnt / f"unread{i}")], stdout=subprocess.DEVNULL)
                for i in range(READERS)
            ]
            try:
                for reader in readers:
                    wait_until(lambda r=reader: _waiting_on_fuse(r.pid), what="reader waiting")
                for reader in readers:
                    reader.kill()
                for reader in readers:
                    reader.wait(PATIENCE)
            finally:
                for reader in readers:
                    if reader.poll() is None:
                        reader.kill()
            # Gone while the server is still stopped: the client answered for them.
            assert _state(server.pid) == "T"
        for i in range(READERS):
            assert (mnt / f"unread{i}").read_bytes() == b"x" * 4096


WORKER = textwrap.dedent(
    """
    import os, sys
    root, progress, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for i in range(rounds):
        name = os.path.join(root, f"w{i % 20}")
        with open(name, "wb") as f:
            f.write(os.urandom(512) + b"%d" % i)
            os.fsync(f.fileno())
        with open(name, "rb") as f:
            assert f.read().endswith(b"%d" % i), name
        if i >= 20:
            os.stat(os.path.join(root, f"w{(i + 7) % 20}"))
        with open(progress, "w") as f:  # off the mount, and no pipe that could fill up
            f.write(str(i))
    """
)


def test_a_stopped_server_continued_goes_on_without_errors(tmp_path, host_dir):
    progress = tmp_path / "progress"
    errors = tmp_path / "errors"

    def done() -> int:
        return int(progress.read_text() or 0)

    with _share(tmp_path, host_dir) as (mnt, server):
        with open(errors, "w") as err:
            worker = subprocess.Popen(
                [sys.executable, "-c", WORKER, str(mnt), str(progress), "100000"],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            wait_until(lambda: done() >= 50, what="worker under way")
            with _stopped(server):
                wait_until(lambda: _waiting_on_fuse(worker.pid), what="worker waiting on FUSE")
                # The stop itself is what is tested: the client must wait it out.
                _hold(worker, STOP_SECONDS, errors)
            # Continued: the worker goes on from where it was, with no error.
            seen = done()
            wait_until(lambda: done() >= seen + 50 or worker.poll() is not None, what="going on")
            assert worker.poll() is None, errors.read_text()
        finally:
            worker.kill()
            worker.wait()


def _hold(worker: subprocess.Popen, seconds: float, errors: pathlib.Path) -> None:
    """Keep the server stopped for ``seconds``; the worker must neither fail nor finish."""
    try:
        worker.wait(seconds)
    except subprocess.TimeoutExpired:
        return
    raise AssertionError(f"worker exited with {worker.returncode}: {errors.read_text()}")
