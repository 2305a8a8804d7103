"""Round trips to the server, per call: what `bridgefs stats` shows beside the FUSE requests."""

from __future__ import annotations

import threading
from typing import Any


class RpcStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, list[int]] = {}  # name -> [count, total ns, errors]

    def record(self, name: str, nanos: int, failed: bool) -> None:
        with self._lock:
            slot = self._calls.get(name)
            if slot is None:
                slot = self._calls[name] = [0, 0, 0]
            slot[0] += 1
            slot[1] += nanos
            slot[2] += failed

    def snapshot(self, reset: bool = False) -> dict[str, Any]:
        with self._lock:
            calls = {
                name: {"count": c, "total_ms": ns / 1e6, "errors": e}
                for name, (c, ns, e) in sorted(self._calls.items())
            }
            if reset:
                self._calls.clear()
        return {"rpc": calls, "round_trips": sum(c["count"] for c in calls.values())}


def method_name(rpc: Any) -> str:
    """'Lookup' for the stub's callable of /bridgefs.v1.Files/Lookup."""
    raw = getattr(rpc, "_method", b"") or b""
    raw = raw.decode() if isinstance(raw, bytes) else str(raw)
    return raw.rsplit("/", 1)[-1] or "?"
