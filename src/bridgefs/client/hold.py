"""The session's hold stream: a ``Watch`` marked ``bridgefs-hold`` that stays open as long as
the client lives, so that the server frees a vanished client's session (and every descriptor
it holds) within seconds instead of at the idle timeout.

Nothing flows on it.  When the connection breaks and comes back (the channel dials again), the
stream is opened again for the same session: the server keeps a session whose hold ended for a
grace period (``Limits.hold_grace``), so a short break costs no new session and no rebinding of
node ids.  When the server ends the stream itself (the session is over, or the server stops),
it waits for ``renew`` (a resumed session) before opening it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

log = logging.getLogger("bridgefs.client")

# Pauses between attempts that fail at once (a call refused rather than waiting for the channel).
RETRY_FIRST, RETRY_MAX = 0.1, 2.0


class HoldStream:
    def __init__(self, open_call: Callable[[], Any]):
        self._open = open_call  # a new hold call for the current session
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._call: Any = None
        self._generation = 0  # moved on by renew: the session changed
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="bridgefs-hold", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def renew(self) -> None:
        """The client holds a new session: hold that one instead."""
        with self._lock:
            self._generation += 1
            call = self._call
            self._wake.notify_all()
        if call is not None:
            call.cancel()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            call = self._call
            self._wake.notify_all()
        if call is not None:
            call.cancel()

    def _run(self) -> None:
        pause = RETRY_FIRST
        while True:
            with self._lock:
                if self._closed:
                    return
                generation = self._generation
                try:
                    self._call = call = self._open()
                except ValueError:  # the channel was closed under it: the client is going
                    return
            started = time.monotonic()
            over = False
            try:
                for _ in call:
                    pass  # only an ESTALE for a session already gone is ever sent
                over = True
            except grpc.RpcError as exc:
                # A broken connection (opened again, same session) or a cancel by renew/close.
                log.debug("hold stream ended: %s", exc.code() if hasattr(exc, "code") else exc)
            with self._lock:
                if over:
                    # The server ended the session or is stopping: the next call finds out and
                    # resumes, which renews.
                    while not self._closed and self._generation == generation:
                        self._wake.wait()
                    continue
                if self._closed or self._generation != generation:
                    pause = RETRY_FIRST
                    continue
            if time.monotonic() - started < 1.0:
                time.sleep(pause)
                pause = min(pause * 2, RETRY_MAX)
            else:
                pause = RETRY_FIRST
