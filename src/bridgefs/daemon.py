"""Serving one mount in the foreground: the FUSE session plus its control socket."""

from __future__ import annotations

import logging
from typing import Any, Callable

from .control import ControlServer
from .fuse.device import MountOptions
from .fuse.filesystem import FileSystem
from .fuse.negotiate import Tuning
from .fuse.session import Session

log = logging.getLogger("bridgefs")


def _stats_handler(session: Session, fs: FileSystem) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def handle(request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "fuse": {op: {"count": c, "total_ms": ns / 1e6, "errors": e}
                     for op, (c, ns, e) in sorted(session.stats().items())},
        }
        extra = getattr(fs, "stats", None)
        if callable(extra):
            answer.update(extra(reset=bool(request.get("reset"))))
        if request.get("reset"):
            session.reset_stats()
        return answer
    return handle


def _status_handler(session: Session, fs: FileSystem) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def handle(request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = {"mountpoint": session.mountpoint, "ready": session.ready.is_set()}
        extra = getattr(fs, "status", None)
        if callable(extra):
            answer.update(extra())
        return answer
    return handle


def serve_mount(fs: FileSystem, mountpoint: str, *, workers: int = 8,
                options: MountOptions | None = None, tuning: Tuning | None = None,
                on_ready: Callable[[], None] | None = None) -> None:
    """Mount ``fs`` and serve it until Ctrl-C, SIGTERM or an unmount from elsewhere."""
    session = Session(fs, mountpoint, workers=workers, options=options, tuning=tuning)
    control = ControlServer(session.mountpoint, {"stats": _stats_handler(session, fs),
                                                 "status": _status_handler(session, fs)})
    try:
        def ready() -> None:
            log.info("mounted at %s; Ctrl-C unmounts", session.mountpoint)
            if on_ready is not None:
                on_ready()
        session.run(on_ready=ready)
        log.info("unmounted %s", session.mountpoint)
    finally:
        control.close()
