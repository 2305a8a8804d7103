"""The figures BENCHMARKS.md gives for a real guest (emulated CPU), beside the same figures on
this host: event latency, a 10,000-file walk, a 64 MiB read.  Printed and written to
$BRIDGEFS_VM_FIGURES (if set) as JSON; asserted only for what they count, not how fast."""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

from qemu import wait_for

GUEST_DIR = pathlib.Path(__file__).parent / "guest"
EVENTS = 40
FILES = 10_000


def _clock_offset(guest) -> float:
    """guest time.time() minus host time.time(), from the agent round trip that was shortest."""
    best = None
    for _ in range(15):
        t0 = time.time()
        g = guest.request({"op": "clock"})["time"]
        t1 = time.time()
        if best is None or t1 - t0 < best[0]:
            best = (t1 - t0, g - (t0 + t1) / 2)
    return best[1]


def _percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def _event_latencies(host_dir: pathlib.Path, read_output, offset: float) -> list[float]:
    latencies = []
    for i in range(EVENTS):
        name = f"e{i:03d}"
        t = time.time()
        (host_dir / name).write_text("x")
        line = wait_for(
            lambda name=name: next(
                (ln for ln in read_output().splitlines() if ln.endswith(f" {name}")), None
            ),
            timeout=30,
            interval=0.01,
        )
        latencies.append(float(line.split()[0]) - offset - t)
    return latencies


def _make_tree(top: pathlib.Path) -> None:
    for d in range(100):
        sub = top / f"d{d:03d}"
        sub.mkdir(parents=True)
        for f in range(FILES // 100):
            (sub / f"f{f:03d}.txt").write_text("x" * 100)


def _summary(latencies, walks, read) -> dict:
    return {
        "event_p50_ms": statistics.median(latencies) * 1000,
        "event_p99_ms": _percentile(latencies, 99) * 1000,
        "walk_cold_s": walks[0]["secs"],
        "walk_warm_s": walks[1]["secs"],
        "read_64mib_s": read["secs"],
        "read_mib_per_s": 64 / read["secs"],
    }


def _guest_figures(vm, shared) -> dict:
    g = vm.guest
    (vm.host / "fig-events").mkdir()
    wait_for(lambda: g.sh(f"ls {shared}/fig-events", check=False)["rc"] == 0)
    g.spawn("fig-watch", f"exec python /code/guest/watch.py {shared}/fig-events")
    try:
        wait_for(lambda: "ready" in g.read("fig-watch")[0], timeout=60)
        offset = _clock_offset(g)
        latencies = _event_latencies(vm.host / "fig-events", lambda: g.read("fig-watch")[0], offset)
    finally:
        g.kill("fig-watch")
    _make_tree(vm.host / "fig-tree")
    (vm.host / "fig-64m.bin").write_bytes(os.urandom(64 << 20))
    walk = f"python /code/guest/walk.py walk {shared}/fig-tree"
    walks = [json.loads(g.sh(walk, timeout=300)["out"]) for _ in range(2)]
    read = json.loads(
        g.sh(f"python /code/guest/walk.py read {shared}/fig-64m.bin", timeout=300)["out"]
    )
    assert all(w["n"] == FILES + 100 for w in walks) and read["n"] == 64 << 20
    return _summary(latencies, walks, read)


def _host_figures(tmp_path) -> dict:
    from mounting import bridgefs_server, remote_mount

    host = tmp_path / "host"
    (host / "fig-events").mkdir(parents=True)
    _make_tree(host / "fig-tree")
    (host / "fig-64m.bin").write_bytes(os.urandom(64 << 20))
    mnt = tmp_path / "mnt"
    with bridgefs_server({"share": str(host)}, f"unix:{tmp_path / 'server.sock'}") as (addr, _):
        with remote_mount(addr, "share", mnt):
            out = tmp_path / "watch.out"
            with open(out, "w") as f:
                watcher = subprocess.Popen(
                    [sys.executable, str(GUEST_DIR / "watch.py"), str(mnt / "fig-events")], stdout=f
                )
            try:
                wait_for(lambda: "ready" in out.read_text())
                latencies = _event_latencies(host / "fig-events", out.read_text, 0.0)
            finally:
                watcher.terminate()
                watcher.wait()
            script = str(GUEST_DIR / "walk.py")
            walks = [
                json.loads(
                    subprocess.run(
                        [sys.executable, script, "walk", str(mnt / "fig-tree")],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                )
                for _ in range(2)
            ]
            read = json.loads(
                subprocess.run(
                    [sys.executable, script, "read", str(mnt / "fig-64m.bin")],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
    return _summary(latencies, walks, read)


def test_figures_in_a_real_guest_and_on_the_host(vm, shared, tmp_path):
    figures = {
        "guest (emulated CPU, virtio-serial)": _guest_figures(vm, shared),
        "host (unix socket)": _host_figures(tmp_path),
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if os.environ.get("BRIDGEFS_VM_FIGURES"):
        pathlib.Path(os.environ["BRIDGEFS_VM_FIGURES"]).write_text(text + "\n")
