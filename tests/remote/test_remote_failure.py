"""The server dies (SIGKILL) while the mount is in use.

Every later operation through the mount fails with an error (EIO or ENOTCONN; ESTALE is
accepted too) instead of hanging: each runs in a process of its own, which must finish within
OP_BOUND seconds and is never left in uninterruptible sleep (D state).  Afterwards
`bridgefs umount MNT` still unmounts, and the mount's process exits.

And the other way round: a client killed (SIGKILL, no Goodbye) loses its session and every
descriptor the server held for it soon after its connection closes, while other clients go on;
a client whose connection breaks and comes back keeps its session."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time

import pytest
from waiting import PATIENCE, wait_until

from bridgefs.fuse import device
from mounting import bridgefs_server, remote_mount
from remotekit import (
    bridgefs_cli,
    listen_address,
    mount_status,
    poll,
    process_state,
    wait_events_flowing,
)

OP_BOUND = 35.0  # seconds any single operation may take once the server is gone
ACCEPTED = {errno.EIO, errno.ENOTCONN, errno.ESTALE}
NAMES = {e: errno.errorcode[e] for e in ACCEPTED}

# Reads the same file in a loop, dropping its page cache each time so that every read goes to
# the mount's process; says "reading" after the first read and reports the first error.
READER = r"""
import json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
n = 0
while True:
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    try:
        data = os.pread(fd, 65536, n % 16 * 65536)
    except OSError as exc:
        print(json.dumps({"errno": exc.errno, "reads": n}), flush=True)
        break
    assert len(data) == 65536, len(data)
    n += 1
    if n == 1:
        print("reading", flush=True)
    time.sleep(0.005)
"""

# Writes to a file it holds open, in a loop; reports the first error.
WRITER = r"""
import json, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
n = 0
while True:
    try:
        os.pwrite(fd, b"w" * 4096, n % 64 * 4096)
    except OSError as exc:
        print(json.dumps({"errno": exc.errno, "writes": n}), flush=True)
        break
    n += 1
    if n == 1:
        print("writing", flush=True)
    time.sleep(0.005)
"""

# Holds a directory open; on a line from stdin lists it and fstat()s it through that descriptor.
HOLDER = r"""
import json, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
print("open", flush=True)
sys.stdin.readline()
out = {}
for what, call in [("listdir-fd", lambda: os.listdir(fd)), ("fstat-fd", lambda: os.fstat(fd))]:
    try:
        call()
        out[what] = None
    except OSError as exc:
        out[what] = exc.errno
print(json.dumps(out), flush=True)
"""

# One operation in a process of its own: prints {"errno": N} or {"errno": null}.
OP = r"""
import json, os, sys
op, path = sys.argv[1], sys.argv[2]
calls = {
    "stat": lambda: os.stat(path),
    "lstat": lambda: os.lstat(path),
    "open": lambda: os.close(os.open(path, os.O_RDONLY)),
    "read": lambda: open(path, "rb").read(),
    "listdir": lambda: os.listdir(path),
    "create": lambda: os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)),
    "mkdir": lambda: os.mkdir(path),
    "unlink": lambda: os.unlink(path),
    "statvfs": lambda: os.statvfs(path),
}
try:
    calls[op]()
    print(json.dumps({"errno": None}))
except OSError as exc:
    print(json.dumps({"errno": exc.errno}))
"""


def _bounded(proc: subprocess.Popen, what: str, timeout: float = OP_BOUND) -> str:
    """Wait for ``proc`` to finish within ``timeout``; fail (after noting its state) if not."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        state = process_state(proc.pid)
        proc.kill()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        pytest.fail(f"{what} did not return within {timeout} s (process state {state})")
    return out


def _run_op(op: str, path) -> tuple[int | None, float, str | None]:
    """(errno or None, seconds taken, state if still alive after) of ``op`` on ``path``."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", OP, op, str(path)], stdout=subprocess.PIPE, text=True
    )
    out = _bounded(proc, f"{op} {path}")
    took = time.monotonic() - started
    return json.loads(out)["errno"], took, process_state(proc.pid)


@pytest.mark.timeout(600)
def test_server_killed_while_in_use(tmp_path, host_dir, mode):
    _name, transport, extra = mode
    (host_dir / "data").write_bytes(os.urandom(1024 * 1024))
    (host_dir / "dir").mkdir()
    for i in range(50):
        (host_dir / "dir" / f"f{i}").write_bytes(b"x" * i)
    mnt = tmp_path / "mnt"
    helpers: list[subprocess.Popen] = []
    with (
        bridgefs_server({"share": str(host_dir)}, listen_address(transport, tmp_path)) as (
            address,
            server,
        ),
        remote_mount(address, "share", mnt, *extra) as client,
    ):
        try:
            if "--no-events" not in extra:
                wait_events_flowing(mnt)  # long-lived caches, which the server's death must end
            reader = subprocess.Popen(
                [sys.executable, "-c", READER, str(mnt / "data")], stdout=subprocess.PIPE, text=True
            )
            helpers.append(reader)
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLDER, str(mnt / "dir")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            helpers.append(holder)
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(mnt / "out")], stdout=subprocess.PIPE, text=True
            )
            helpers.append(writer)
            assert reader.stdout.readline() == "reading\n"
            assert writer.stdout.readline() == "writing\n"
            assert holder.stdout.readline() == "open\n"
            assert sorted(os.listdir(mnt / "dir")) == sorted(f"f{i}" for i in range(50))

            server.kill()
            server.wait(30)

            # The reader's next uncached read of its open descriptor fails.
            result = json.loads(_bounded(reader, "the reader's read of its open fd"))
            assert result["errno"] in ACCEPTED, f"read of an open fd: {result}"
            assert result["reads"] >= 1
            result = json.loads(_bounded(writer, "the writer's write to its open fd"))
            assert result["errno"] in ACCEPTED, f"write to an open fd: {result}"

            # Let the kernel's cached names and attributes run out: the client drops its
            # long-lived caches once it sees the change stream broke, and the short ones last
            # 1 s, so that second must pass (time itself is the condition).  From then on every
            # operation needs the server.
            poll(
                lambda: mount_status(mnt).get("cache_mode") == "short",
                what="the client saw the change stream break",
            )
            time.sleep(1.5)

            holder.stdin.write("go\n")
            holder.stdin.flush()
            got = json.loads(_bounded(holder, "the holder's listing of its open directory"))
            for what, err in got.items():
                assert err in ACCEPTED, f"{what} on an open directory: {err}"

            results = {}
            for op, path in [
                ("stat", mnt / "data"),
                ("lstat", mnt / "dir" / "f3"),
                ("stat", mnt),
                ("open", mnt / "data"),
                ("read", mnt / "dir" / "f7"),
                ("listdir", mnt / "dir"),
                ("listdir", mnt),
                ("create", mnt / "new-file"),
                ("create", mnt / "dir" / "new"),
                ("mkdir", mnt / "new-dir"),
                ("unlink", mnt / "dir" / "f1"),
                ("statvfs", mnt),
            ]:
                err, took, state = _run_op(op, path)
                results[f"{op} {path.relative_to(tmp_path)}"] = (err, round(took, 2), state)
            bad = {k: v for k, v in results.items() if v[0] not in ACCEPTED}
            assert not bad, f"operations that did not fail with {NAMES}: {bad} (all: {results})"
            stuck = {k: v for k, v in results.items() if v[2] == "D"}
            assert not stuck, f"processes left in D state: {stuck}"
            print("after the server died:", json.dumps(results))

            for proc in helpers:
                assert proc.wait(OP_BOUND) is not None
                assert process_state(proc.pid) is None  # reaped, not stuck
            # Nothing changed on the host while the server was gone.
            assert not (host_dir / "new-file").exists()
            assert (host_dir / "dir" / "f1").exists()

            # The CLI still unmounts (nothing holds the mount any more) and the mount's
            # process notices and exits.
            done = bridgefs_cli("umount", str(mnt), timeout=OP_BOUND)
            assert done.returncode == 0, done.stderr
            assert not device.is_mounted(str(mnt))
            assert client.wait(OP_BOUND) == 0
        finally:
            for proc in helpers:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate()


def _server_fds(server: subprocess.Popen) -> int:
    return len(os.listdir(f"/proc/{server.pid}/fd"))


@pytest.mark.timeout(600)
def test_killed_client_frees_its_session(tmp_path, host_dir):
    for i in range(2000):
        (host_dir / f"f{i}").write_bytes(b"%d\n" % i)
    other_mnt, killed_mnt = tmp_path / "other", tmp_path / "killed"
    with (
        bridgefs_server({"share": str(host_dir)}, listen_address("unix", tmp_path)) as (
            address,
            server,
        ),
        remote_mount(address, "share", other_mnt),
    ):
        assert (other_mnt / "f1").read_bytes() == b"1\n"
        before = _server_fds(server)
        with remote_mount(address, "share", killed_mnt) as client:
            # A node, so a descriptor on the server, for each file; kept open so that the
            # kernel cannot forget them (reclaim, another process dropping caches).
            opened = [os.open(killed_mnt / f"f{i}", os.O_RDONLY) for i in range(2000)]
            try:
                held = _server_fds(server)
                assert held >= before + 2000
                client.kill()  # by pid: the one this test started
                client.wait(30)
                wait_until(
                    lambda: _server_fds(server) <= before + 8,
                    what=f"the server closes the killed client's {held - before} descriptors",
                )
            finally:
                for fd in opened:
                    with contextlib.suppress(OSError):  # ENOTCONN once the client is gone
                        os.close(fd)
        # The other client's session is untouched.
        assert (other_mnt / "f2").read_bytes() == b"2\n"
        (other_mnt / "new").write_bytes(b"still served\n")
        assert (host_dir / "new").read_bytes() == b"still served\n"


# A relay between the client and the server (as a VM's vsock or serial leg is), which the test
# kills to break the connection and starts again.
RELAY = r"""
import signal, socket, sys
from bridgefs.vsock import Forwarder
relay = Forwarder(socket.AF_UNIX, sys.argv[1], socket.AF_UNIX, sys.argv[2], name="relay").start()
print("relaying", flush=True)
signal.sigwait({signal.SIGINT, signal.SIGTERM})
relay.close()
"""


def _relay(listen: str, target: str) -> subprocess.Popen:
    if os.path.exists(listen):
        os.unlink(listen)  # left by the relay killed before
    proc = subprocess.Popen([sys.executable, "-c", RELAY, listen, target], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"relaying\n"
    return proc


@pytest.mark.timeout(600)
def test_a_broken_connection_keeps_the_session(tmp_path, host_dir):
    """The connection breaks and comes back: the client holds the same session, so a file it
    had open, unlinked since (which no new session could find again by name), still reads."""
    server_sock, relay_sock = tmp_path / "server.sock", str(tmp_path / "relay.sock")
    mnt = tmp_path / "mnt"
    relays: list[subprocess.Popen] = []
    # A grace longer than any reconnection on a loaded machine: the session must be kept.
    with bridgefs_server(
        {"share": str(host_dir)}, f"unix:{server_sock}", options=["--hold-grace", "120"]
    ) as (_address, server):
        try:
            relays.append(_relay(relay_sock, str(server_sock)))
            with remote_mount(f"unix:{relay_sock}", "share", mnt):
                wait_events_flowing(mnt)
                (mnt / "kept").write_bytes(b"kept open\n")
                fd = os.open(mnt / "kept", os.O_RDONLY)
                try:
                    os.unlink(mnt / "kept")
                    relays[-1].kill()
                    relays[-1].wait(30)
                    poll(
                        lambda: mount_status(mnt).get("events") != "flowing",
                        what="the client sees its connection break",
                    )
                    relays.append(_relay(relay_sock, str(server_sock)))
                    wait_events_flowing(mnt, timeout=PATIENCE)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    assert os.pread(fd, 100, 0) == b"kept open\n"
                finally:
                    os.close(fd)
                assert mount_status(mnt)["reconnects"] >= 1
                (mnt / "after").write_bytes(b"after the break\n")
            assert (host_dir / "after").read_bytes() == b"after the break\n"
        finally:
            for relay in relays:
                if relay.poll() is None:
                    relay.kill()
                relay.wait(30)
                relay.stdout.close()
