"""A mount's control socket: `bridgefs stats` and `bridgefs status` ask the process serving a
mount point for its figures.  One JSON object per line each way."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)

RUN_DIR = "/run/bridgefs"


def socket_path(mountpoint: str) -> str:
    digest = hashlib.sha1(os.path.realpath(mountpoint).encode()).hexdigest()[:20]
    return os.path.join(RUN_DIR if os.geteuid() == 0 else f"/tmp/bridgefs-{os.getuid()}",
                        f"{digest}.sock")


Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """Answers commands for one mount on a unix socket only its owner can reach."""

    def __init__(self, mountpoint: str, handlers: dict[str, Handler]):
        self.path = socket_path(mountpoint)
        self.handlers = handlers
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
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
                    log.warning("control request failed: %s", exc)
                    answer = {"error": str(exc)}
                try:
                    conn.sendall(json.dumps(answer).encode() + b"\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def ask(mountpoint: str, cmd: str, **args: Any) -> dict[str, Any]:
    path = socket_path(mountpoint)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise OSError(f"no bridgefs process serves {mountpoint}") from None
        s.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        return json.loads(s.makefile("r").readline())
