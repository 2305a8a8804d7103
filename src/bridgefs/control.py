"""A mount's control socket: `bridgefs stats` and `bridgefs status` ask the process serving a
mount point for its figures.  One JSON object per line each way, except where a handler answers
in bytes of its own (`changes`: git's fsmonitor format, which `bridgefs fsmonitor` passes on).

`bridgefs fsmonitor` runs on every `git status` and asks through this module: what only the
server side or `ask` needs (json, socket, threading, typing) is imported where it is used.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Handler = Callable[[dict[str, Any]], "dict[str, Any] | bytes"]


def runtime_dirs() -> list[str]:
    """Where this user's control sockets, logs and private sockets may live, best first.

    A fresh boot has an empty /run (or none that is writable: a read-only root without a tmpfs
    there), and a user may have no XDG_RUNTIME_DIR: the later places cover those machines."""
    uid = os.geteuid()
    dirs = []
    if uid == 0:
        dirs.append("/run/bridgefs")
    else:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg and os.path.isabs(xdg):
            dirs.append(os.path.join(xdg, "bridgefs"))
        dirs.append(f"/run/user/{uid}/bridgefs")
    dirs += [f"/tmp/bridgefs-{uid}", f"/dev/shm/bridgefs-{uid}"]
    return dirs


def _own_dir(path: str) -> str:
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    # A shared place like /tmp lets anyone make the folder first: use it only if it is ours.
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise OSError(errno.EPERM, "exists and is not a folder of this user")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    if not os.access(path, os.W_OK | os.X_OK):
        raise OSError(errno.EROFS, "not writable")
    return path


def runtime_dir() -> str:
    """The first of ``runtime_dirs()`` that exists or can be made, owned by this user only."""
    problems = []
    for path in runtime_dirs():
        try:
            return _own_dir(path)
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
    raise OSError(errno.EROFS, "no folder for bridgefs's sockets and logs: " + "; ".join(problems))


def _socket_name(mountpoint: str) -> str:
    return hashlib.sha1(os.path.realpath(mountpoint).encode()).hexdigest()[:20] + ".sock"


def socket_path(mountpoint: str) -> str:
    """Where the control socket of the mount at ``mountpoint`` is made (the folder is created)."""
    return os.path.join(runtime_dir(), _socket_name(mountpoint))


def find_socket(mountpoint: str) -> str | None:
    """The control socket of a running mount: the process that made it may have had another
    environment (XDG_RUNTIME_DIR) than the one asking, so every place is looked at."""
    name = _socket_name(mountpoint)
    for path in runtime_dirs():
        candidate = os.path.join(path, name)
        try:
            if stat.S_ISSOCK(os.lstat(candidate).st_mode):
                return candidate
        except OSError:
            continue
    return None


class ControlServer:
    """Answers commands for one mount on a unix socket only its owner can reach."""

    def __init__(self, mountpoint: str, handlers: dict[str, Handler]):
        import socket
        import threading

        self.path = socket_path(mountpoint)
        self.handlers = handlers
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        os.chmod(self.path, 0o600)
        self._sock.listen(4)
        self._thread = threading.Thread(target=self._serve, daemon=True, name="control")
        self._thread.start()

    def _serve(self) -> None:
        import json

        answer: dict[str, Any] | bytes
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                try:
                    request = json.loads(conn.makefile("r").readline() or "{}")
                    handler = self.handlers.get(request.get("cmd", ""))
                    answer = handler(request) if handler else {"error": "unknown command"}
                except Exception as exc:  # a bad request must not stop the control thread
                    # (logging imported here: `bridgefs fsmonitor`, started by git on every
                    # status, imports this module only to ask)
                    import logging

                    logging.getLogger(__name__).warning("control request failed: %s", exc)
                    answer = {"error": str(exc)}
                reply = answer if isinstance(answer, bytes) else json.dumps(answer).encode() + b"\n"
                try:
                    conn.sendall(reply)
                except OSError:
                    pass

    def close(self) -> None:
        self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def ask(mountpoint: str, cmd: str, **args: Any) -> dict[str, Any]:
    import json

    reply = ask_raw(mountpoint, json.dumps({"cmd": cmd, **args}).encode() + b"\n")
    answer: dict[str, Any] = json.loads(reply.split(b"\n", 1)[0])
    return answer


def ask_raw(mountpoint: str, request: bytes) -> bytes:
    """Send one request line, return everything the mount answers (it closes after)."""
    import socket

    path = find_socket(mountpoint)
    if path is None:
        raise OSError(f"no bridgefs process serves {mountpoint}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise OSError(f"no bridgefs process serves {mountpoint}") from None
        s.sendall(request)
        parts = []
        while chunk := s.recv(1 << 16):
            parts.append(chunk)
        return b"".join(parts)
