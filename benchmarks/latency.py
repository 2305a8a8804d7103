"""W10: how long a host-side change takes to reach the VM.

    .venv/bin/python -m benchmarks.latency [--changes 200] [--out benchmarks/results]

For each of N changes (a host program rewriting a small file), two delays are measured:
- event: from the host write to the IN_MODIFY/IN_CLOSE_WRITE that `inotifywait -m` inside the
  mount prints (what a dev server waits for);
- content: from the host write to the first read through the mount that returns the new bytes.
The same is measured on the host folder itself (native inotify, native read) as the floor.
Only bridgefs takes part: bindfs and sshfs forward no host changes to watchers in their mounts
(their event delay is infinite, their content delay their cache timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

FILES = 20  # changes rotate over this many files, as edits do over a few open buffers


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Watcher:
    def __init__(self, root: pathlib.Path):
        self.proc = subprocess.Popen(
            ["inotifywait", "-m", "-e", "modify,close_write,moved_to", "--format", "%f", str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in self.proc.stderr:
            if "Watches established" in line:
                break
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put((time.perf_counter(), line.strip()))

    def wait_for(self, name: str, timeout: float = 10.0) -> float | None:
        deadline = time.perf_counter() + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            try:
                when, got = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if got == name:
                return when

    def drain(self) -> None:
        while not self.lines.empty():
            self.lines.get_nowait()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def _write(path: pathlib.Path, text: str) -> float:
    started = time.perf_counter()
    path.write_text(text)
    return started


def measure_events(host: pathlib.Path, view: pathlib.Path, changes: int) -> list[float | None]:
    watcher = Watcher(view)
    delays: list[float | None] = []
    try:
        for i in range(changes):
            name = f"f{i % FILES:02}.txt"
            time.sleep(0.02)
            watcher.drain()
            started = _write(host / name, f"version {i}\n")
            seen = watcher.wait_for(name)
            delays.append(None if seen is None else seen - started)
    finally:
        watcher.close()
    return delays


def measure_content(host: pathlib.Path, view: pathlib.Path, changes: int) -> list[float | None]:
    delays: list[float | None] = []
    for i in range(changes):
        name = f"f{i % FILES:02}.txt"
        expected = f"content {i}\n"
        (view / name).read_text()  # cached in the VM before the change
        time.sleep(0.02)
        started = _write(host / name, expected)
        deadline = started + 10
        delay = None
        while time.perf_counter() < deadline:
            if (view / name).read_text() == expected:
                delay = time.perf_counter() - started
                break
            time.sleep(0.0005)
        delays.append(delay)
    return delays


def _summary(delays: list[float | None]) -> dict:
    got = [d for d in delays if d is not None]
    return {
        "changes": len(delays),
        "missed": len(delays) - len(got),
        "p50_ms": round(_percentile(got, 0.5) * 1000, 2) if got else None,
        "p99_ms": round(_percentile(got, 0.99) * 1000, 2) if got else None,
        "max_ms": round(max(got) * 1000, 2) if got else None,
        "mean_ms": round(statistics.mean(got) * 1000, 2) if got else None,
    }


def _wait_mounted(mnt: pathlib.Path, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/self/mountinfo") as f:
            if any(line.split()[4] == str(mnt) for line in f):
                return
        if proc.poll() is not None:
            raise RuntimeError("bridgefs run exited")
        time.sleep(0.05)
    raise RuntimeError("bridgefs did not mount")


def _wait_flowing(mnt: pathlib.Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            [sys.executable, "-m", "bridgefs", "status", str(mnt), "--json"],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0 and json.loads(out.stdout).get("events") == "flowing":
            return
        time.sleep(0.1)
    raise RuntimeError("host changes do not flow")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bridgefs-latency-"))
    host, mnt = work / "host", work / "mnt"
    host.mkdir()
    mnt.mkdir()
    for i in range(FILES):
        (host / f"f{i:02}.txt").write_text("initial\n")
    results: dict = {"changes": args.changes, "load_start": os.getloadavg()}
    results["native"] = {
        "event": _summary(measure_events(host, host, args.changes)),
        "content": _summary(measure_content(host, host, args.changes)),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridgefs", "run", str(host), str(mnt)], stderr=subprocess.DEVNULL
    )
    try:
        _wait_mounted(mnt, proc)
        _wait_flowing(mnt)
        results["bridgefs"] = {
            "event": _summary(measure_events(host, mnt, args.changes)),
            "content": _summary(measure_content(host, mnt, args.changes)),
        }
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    results["load_end"] = os.getloadavg()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest-latency.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'':10}{'event p50':>12}{'event p99':>12}{'content p50':>14}{'content p99':>14}")
    for col in ("native", "bridgefs"):
        e, c = results[col]["event"], results[col]["content"]
        print(
            f"{col:10}{e['p50_ms']:>10} ms{e['p99_ms']:>10} ms{c['p50_ms']:>12} ms"
            f"{c['p99_ms']:>12} ms   missed {e['missed']}/{c['missed']}"
        )
    for p in sorted(host.iterdir()):
        p.unlink()
    host.rmdir()
    mnt.rmdir()
    work.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
