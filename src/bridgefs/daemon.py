"""Serving one mount in the foreground: the FUSE session plus its control socket."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from .control import ControlServer, runtime_dir, socket_path
from .fuse.device import MountOptions, is_mounted
from .fuse.filesystem import FileSystem
from .fuse.negotiate import Tuning
from .fuse.session import Session

log = logging.getLogger("bridgefs")


def _stats_handler(session: Session, fs: FileSystem) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def handle(request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "fuse": {
                op: {"count": c, "total_ms": ns / 1e6, "errors": e}
                for op, (c, ns, e) in sorted(session.stats().items())
            },
        }
        answer.update(fs.stats(reset=bool(request.get("reset"))))
        if request.get("reset"):
            session.reset_stats()
        return answer

    return handle


def _status_handler(session: Session, fs: FileSystem) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def handle(request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = {"mountpoint": session.mountpoint, "ready": session.ready.is_set()}
        answer.update(fs.status())
        return answer

    return handle


def _changes_handler(fs: FileSystem) -> Callable[[dict[str, Any]], bytes]:
    """`bridgefs fsmonitor`: what changed under a folder of the mount (``under``: its path from
    the root, hex-encoded bytes) since a token, answered in git's fsmonitor format (the token,
    then each path, NUL-terminated; ``/`` for everything), which the hook passes on as it is."""

    def handle(request: dict[str, Any]) -> bytes:
        token, paths = fs.changes_since(
            str(request.get("since", "")), bytes.fromhex(str(request.get("under", "")))
        )
        head = token.encode() + b"\0"
        return head + (b"/" if paths is None else b"".join(p + b"\0" for p in paths if p))

    return handle


def serve_mount(
    fs: FileSystem,
    mountpoint: str,
    *,
    workers: int = 8,
    options: MountOptions | None = None,
    tuning: Tuning | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Mount ``fs`` and serve it until Ctrl-C, SIGTERM or an unmount from elsewhere."""
    session = Session(fs, mountpoint, workers=workers, options=options, tuning=tuning)
    control = ControlServer(
        session.mountpoint,
        {
            "stats": _stats_handler(session, fs),
            "status": _status_handler(session, fs),
            "changes": _changes_handler(fs),
        },
    )
    fs.attach(session.notify, session.mountpoint)
    try:

        def ready() -> None:
            log.info("mounted at %s; Ctrl-C unmounts", session.mountpoint)
            fs.mounted()
            if on_ready is not None:
                on_ready()

        session.run(on_ready=ready)
        log.info("unmounted %s", session.mountpoint)
    finally:
        control.close()


def _die_with_parent() -> None:
    """In a child: get SIGTERM when the parent dies, so no server outlives its mount."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def private_server(hostdir: str, token_file: str | None = None) -> Iterator[str]:
    """A bridgefs server for ``hostdir`` alone, in its own process (as it would run on a host),
    on a unix socket in a private directory; yields the address and removes everything after.
    ``token_file``: the server asks for that token too."""
    if not os.path.isdir(hostdir):
        raise OSError(f"{hostdir} is not a directory")
    private = tempfile.mkdtemp(prefix="bridgefs-run-", dir=runtime_dir())
    address = f"unix:{os.path.join(private, 'server.sock')}"
    # Its own session: Ctrl-C in the terminal reaches only the client, which stops the server
    # after unmounting (processes still inside a busy mount are served until then).
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridgefs",
            "serve",
            "--share",
            f"share={os.path.abspath(hostdir)}",
            "--listen",
            address,
            # One client, and room for the session a resume opens while the old one is reaped:
            # the descriptor budget goes to its nodes instead of to 64 sessions nobody opens.
            "--max-sessions",
            "2",
            *(["--token-file", token_file] if token_file else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    stdout = server.stdout
    assert stdout is not None  # (stdout=PIPE)
    try:
        line = stdout.readline()
        if "listening on" not in line:
            raise OSError(f"the bridgefs server did not start (exit status {server.wait()})")
        yield address
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        stdout.close()
        shutil.rmtree(private, ignore_errors=True)


def spawn_background(argv: list[str], mountpoint: str, timeout: float = 30.0) -> int:
    """Start ``bridgefs ARGV`` detached and return once its mount is up (or it failed)."""
    mountpoint = os.path.realpath(mountpoint)
    log_path = socket_path(mountpoint)[: -len(".sock")] + ".log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridgefs", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_mounted(mountpoint):
            log.info("mounted at %s (pid %d, log %s)", mountpoint, proc.pid, log_path)
            return 0
        if proc.poll() is not None:
            with open(log_path) as f:
                sys.stderr.write(f.read())
            return proc.returncode or 1
        time.sleep(0.05)
    log.error("no mount at %s after %.0f s; see %s", mountpoint, timeout, log_path)
    return 1
