"""``python -m benchmarks.run``: build the dataset, bring up the columns, measure, report.

Columns are interleaved: for each workload and each repetition every column runs once, in an
order rotated by one at each repetition, so that a slow drift of the machine (another job,
thermal limits, the page cache filling) spreads over all columns instead of landing on one.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pathlib
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback

from . import dataset, report
from .peers import PEERS, PeerUnavailable, Registry, mount_points, unmount
from .workloads import (
    Ctx,
    RunFailed,
    Workload,
    base_env,
    drop_caches,
    remove_leftovers,
    run_untimed,
    select,
    timed,
)

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Compare bridgefs with the native folder, bindfs and sshfs (see "
        "BENCHMARKS.md). Needs root: it mounts and drops the page cache.",
    )
    p.add_argument(
        "--workdir",
        default="/var/tmp/bridgefs-bench",
        help="dataset, mount points, keys and logs (default %(default)s)",
    )
    p.add_argument("--repeat", type=int, help="runs per workload and column (default 5)")
    p.add_argument(
        "--big-mib", type=int, help="size of the big file and of W6's write (default 512)"
    )
    p.add_argument("--only", help="workloads, e.g. W1,W3 (W4 = W4c and W4w)")
    p.add_argument(
        "--columns",
        default="native,bindfs,sshfs,bridgefs",
        help="columns to run (default %(default)s)",
    )
    p.add_argument(
        "--load",
        choices=["idle", "busy"],
        default="idle",
        help="busy: one nice -n 19 CPU spinner per core during the runs",
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke test: 500 files, 16 MiB big file, 2 repetitions"
    )
    p.add_argument(
        "--out",
        default=str(HERE / "results"),
        help="where the JSON and PNG go (default benchmarks/results)",
    )
    p.add_argument(
        "--update-md",
        action="store_true",
        help="rewrite this load mode's results section of BENCHMARKS.md",
    )
    p.add_argument(
        "--install",
        action="store_true",
        help="apt-get install the missing Debian packages (bindfs, sshfs, ...)",
    )
    p.add_argument(
        "--report",
        metavar="JSON",
        help="measure nothing: print, chart and (with --update-md) record the "
        "results of an earlier run from its JSON file",
    )
    p.add_argument(
        "--no-remount",
        action="store_true",
        help="cold runs only drop the page cache instead of also remounting the "
        "FUSE columns (their daemons' own caches then stay warm)",
    )
    args = p.parse_args(argv)
    args.repeat = args.repeat or (2 if args.quick else 5)
    args.big_mib = args.big_mib or (16 if args.quick else 512)
    if args.repeat < 1 or args.big_mib < 1:
        p.error("--repeat and --big-mib must be at least 1")
    args.columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    unknown = [c for c in args.columns if c not in PEERS]
    if unknown:
        p.error(f"unknown column(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    if args.update_md and args.quick:
        p.error("--update-md records reference figures: not from a --quick run")
    return args


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [float(x) for x in pathlib.Path("/proc/loadavg").read_text().split()[:3]]


def pressure() -> dict[str, float]:
    """Share of the last 10 s in which some task waited for CPU / IO (Linux PSI): the load
    average alone hides another job hammering the disk."""
    out = {}
    for kind in ("cpu", "io"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            first = pathlib.Path(f"/proc/pressure/{kind}").read_text().split()
            out[kind] = float(first[1].split("=")[1])
    return out


def machine() -> dict:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(pathlib.Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": cpu,
        "mem_gib": mem_kib / (1 << 20),
        "python": platform.python_version(),
    }


def source_version() -> str | None:
    """The commit measured, "+dirty" when the work tree differs: bridgefs changes daily."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"apt-get install {' '.join(packages)}")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def sweep_mounts(workdir: pathlib.Path) -> None:
    """Unmount whatever is still mounted under our own mount directory (never elsewhere)."""
    base = str(workdir / "mnt") + "/"
    for mp in mount_points():
        if mp.startswith(base):
            with contextlib.suppress(RuntimeError):
                unmount(pathlib.Path(mp))


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.report:
        return report_only(args)
    if os.geteuid() != 0:
        print(
            "the benchmark mounts filesystems and drops the page cache: run it as root",
            file=sys.stderr,
        )
        return 2
    if not shutil.which("git"):
        if not args.install:
            print("git is missing (apt-get install git, or pass --install)", file=sys.stderr)
            return 2
        apt_install(["git"])
    workdir = pathlib.Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    lock = open(workdir / "lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another benchmark is running in {workdir}", file=sys.stderr)
        return 2

    registry = Registry(workdir / "pids.json")
    # SIGINT too: a shell without job control starts background jobs with SIGINT ignored,
    # and such a run must still clean up when interrupted.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    started = time.time()
    run: dict = {
        "schema": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "command": ("python -m benchmarks.run " + shlex.join(argv)).strip(),
        "options": {
            "repeat": args.repeat,
            "big_mib": args.big_mib,
            "quick": args.quick,
            "only": args.only,
            "remount_cold": not args.no_remount,
        },
        "load": {
            "mode": args.load,
            "loadavg_start": loadavg(),
            "pressure_start": pressure(),
            "spinners": 0,
        },
        "machine": machine(),
        "source": source_version(),
        "columns": {},
        "workloads": [],
        "notes": [],
    }
    psi = run["load"]["pressure_start"]
    if args.load == "idle" and (
        run["load"]["loadavg_start"][0] > 0.5 * os.cpu_count()
        or psi.get("io", 0) > 10
        or psi.get("cpu", 0) > 10
    ):
        note = (
            f"the machine was not idle at the start (load average "
            f"{run['load']['loadavg_start'][0]:.2f}, CPU/IO pressure "
            f"{psi.get('cpu', 0):.0f}%/{psi.get('io', 0):.0f}%): other processes may add "
            f"noise"
        )
        run["notes"].append(note)
        log("warning: " + note)
    interrupted: str | None = None
    try:
        registry.stop_leftovers(log)
        sweep_mounts(workdir)
        params = (
            dataset.Params(files=500, dirs=60, big_mib=args.big_mib)
            if args.quick
            else dataset.Params(big_mib=args.big_mib)
        )
        ds = dataset.ensure(workdir, params, log)
        remove_leftovers(ds)
        manifest = ds.manifest()
        run["dataset"] = {
            "path": str(ds.root),
            "files": params.files,
            "dirs": manifest["dirs"],
            "max_depth": manifest["max_depth"],
            "tree_mib": manifest["tree_bytes"] / (1 << 20),
            "big_mib": params.big_mib,
            "py_import": manifest["py_import"],
            "py_packages": manifest["py_packages"],
        }
        peers = start_peers(args, ds.root, workdir, registry, run)
        if args.load == "busy":
            start_spinners(registry, run)
        measure(select(args.only), peers, ds, workdir, args, run)
    except KeyboardInterrupt:
        interrupted = "interrupted"
        log("interrupted: unmounting and stopping everything started")
    except Exception as exc:
        # Keep what was measured so far; the traceback still goes to stderr.
        interrupted = f"error: {exc!r}"
        traceback.print_exc()
        log("error: unmounting and stopping everything started")
    finally:
        run["load"]["loadavg_end"] = loadavg()
        run["load"]["pressure_end"] = pressure()
        # A second Ctrl-C must not cut the cleanup short and leave mounts behind.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for err in registry.close_all():
            log(f"cleanup: {err}")
        sweep_mounts(workdir)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _interrupt)
    run["duration_s"] = time.time() - started
    run["interrupted"] = interrupted
    code = write_results(run, args)
    return code if not interrupted else 130 if interrupted == "interrupted" else 1


def start_peers(args, src, workdir, registry, run) -> list:
    peers = [PEERS[name](src, workdir, registry) for name in args.columns]
    missing = {exe: pkg for p in peers for exe, pkg in p.missing().items()}
    if missing and args.install:
        apt_install(sorted(set(missing.values())))
    for p in peers:
        run["columns"][p.name] = {"status": "ok", "reason": None}
    ready = []
    for p in peers:
        status = run["columns"][p.name]
        lacking = p.missing()
        if lacking:
            what = ", ".join(f"{exe} (Debian package {pkg})" for exe, pkg in lacking.items())
            status.update(
                status="unavailable",
                label="not installed",
                reason=f"missing {what}; pass --install to install",
            )
        else:
            try:
                p.start()
                ready.append(p)
            except PeerUnavailable as exc:
                status.update(status="unavailable", label=exc.label, reason=str(exc))
        status["version"] = p.versions() if not lacking else None
        if status["status"] != "ok":
            log(f"column {p.name} skipped: {status['reason']}")
        else:
            log(f"column {p.name}: ready at {p.root}")
    return ready


def start_spinners(registry: Registry, run: dict) -> None:
    n = os.cpu_count() or 1
    for _ in range(n):
        proc = registry.spawn(["nice", "-n", "19", "sh", "-c", "while :; do :; done"])

        def stop(proc=proc):
            proc.kill()
            proc.wait()
            registry.reaped(proc)

        registry.push("cpu spinner", stop)
    run["load"]["spinners"] = n
    log(f"load busy: {n} CPU spinners at nice 19")


def measure(workloads: list[Workload], peers: list, ds, workdir, args, run) -> None:
    active = list(peers)

    def drop(peer, cell, why: str) -> None:
        peer.failed = peer.failed or why
        run["columns"][peer.name].update(status="failed", reason=peer.failed)
        cell["errors"].append(why)
        if peer in active:
            active.remove(peer)
        log(f"column {peer.name} failed: {why}")

    for w in workloads:
        rec = {
            "key": w.key,
            "group": w.group,
            "title": w.title,
            "short": w.short,
            "cold": w.cold,
            "unit": "MB/s" if w.nbytes else "s",
            "bytes": w.nbytes(ds) if w.nbytes else None,
            "skip": w.skip,
            "loadavg_start": loadavg(),
            "pressure_start": pressure(),
            "columns": {},
        }
        run["workloads"].append(rec)
        if w.skip:
            log(f"{w.key} skipped: {w.skip}")
            continue
        log(f"{w.key} {w.title}")
        ctxs = {p.name: Ctx(p, ds, workdir) for p in active}
        cells = {
            p.name: rec["columns"].setdefault(p.name, {"times": [], "errors": []}) for p in active
        }
        runners = []
        for p in list(active):
            ctx, cell = ctxs[p.name], cells[p.name]
            try:
                if w.prepare:
                    w.prepare(ctx)
                runners.append(p)
            except (RunFailed, OSError, subprocess.SubprocessError) as exc:
                cell["errors"].append(f"prepare: {exc}")
                log(f"  {p.name}: prepare failed: {exc}")
                problem = p.alive() or (str(exc) if getattr(exc, "timed_out", False) else None)
                if problem:
                    drop(p, cell, problem)
        for rep in range(args.repeat):
            k = rep % len(runners) if runners else 0
            for p in runners[k:] + runners[:k]:
                if p not in active:
                    continue
                ctx, cell = ctxs[p.name], cells[p.name]
                problem = p.alive()
                if problem:
                    drop(p, cell, problem)
                    continue
                try:
                    t = run_once(w, p, ctx, cell, args, workdir)
                except PeerUnavailable as exc:
                    drop(p, cell, f"remount failed: {exc}")
                    continue
                except (RunFailed, OSError, subprocess.SubprocessError) as exc:
                    cell["errors"].append(f"run {rep + 1}: {exc}")
                    log(f"  {p.name} run {rep + 1}: FAILED {exc}")
                    problem = p.alive() or (str(exc) if getattr(exc, "timed_out", False) else None)
                    if problem:
                        drop(p, cell, problem)
                    continue
                extra = f"  {rec['bytes'] / 1e6 / t:.0f} MB/s" if rec["bytes"] else ""
                log(f"  {p.name:8} run {rep + 1}/{args.repeat}: {t:.3f} s{extra}")
        for p in runners:
            if w.finish:
                with contextlib.suppress(OSError, RunFailed):
                    w.finish(ctxs[p.name])


def run_once(w: Workload, p, ctx: Ctx, cell: dict, args, workdir: pathlib.Path) -> float:
    env = {**base_env(), **w.env(ctx)}
    if w.cold:
        # A fresh mount as well as an empty page cache: sshfs (and bridgefs) keep caches of
        # their own in user space that drop_caches does not reach.
        if p.fuse and not args.no_remount:
            p.remount()
        drop_caches()
        # One statfs through the mount pages the daemons' own code back in (drop_caches took
        # it too): on a real host the file server never loses it to the VM's cold start.  It
        # reads nothing of the dataset.
        for cmd in [["stat", "-f", str(p.root)]] + w.prewarm(ctx):
            run_untimed(cmd, base_env(), workdir)
    counting = p.name == "bridgefs"
    # W2c: the cold run and the timed one right after it, with nothing in between (no waiting
    # for quiet, no `bridgefs stats` process), so its request counts cover both runs.
    at_once = w.cold and w.prime
    if at_once:
        p.quiesce()
        reset_problem = p.stats(reset=True) if counting else None
    if w.prime:
        # Right before, not once per workload: the FUSE columns' kernel caches expire after
        # a second (libfuse's default timeouts), so a prime followed by the other columns'
        # runs would leave a varying part of them cold.
        run_untimed(w.command(ctx), env, workdir)
    if w.before:
        w.before(ctx)
    if not at_once:
        p.quiesce()
        reset_problem = p.stats(reset=True) if counting else None
    t = timed(w.command(ctx), env, workdir)
    cell["times"].append(t)
    if counting:
        cell.setdefault("stats", []).append(reset_problem or p.stats(reset=False))
    if w.after:
        w.after(ctx)
    return t


def print_results(run: dict) -> None:
    print()
    print(
        f"bridgefs benchmark, load mode {run['load']['mode']} "
        f"({run['load'].get('spinners', 0)} spinners), {run['machine']['nproc']} cores, "
        f"kernel {run['machine']['kernel']}, {run['options']['repeat']} repetitions"
        + (f", INCOMPLETE ({run['interrupted']})" if run.get("interrupted") else "")
    )
    print(report.table(run))
    for note in report.column_notes(run) + run["notes"]:
        print(f"  note: {note}")
    st = report.stats_table(run)
    if st:
        print("\n" + st)


def report_only(args) -> int:
    path = pathlib.Path(args.report)
    run = json.loads(path.read_text())
    report.finalize(run)
    print_results(run)
    png: pathlib.Path | None = path.with_suffix(".png")
    no_chart = report.chart(run, png)
    if no_chart:
        print(f"  note: no chart: {no_chart}")
        png = None
    else:
        print(f"\nchart: {png}")
    if args.update_md:
        if run.get("interrupted") or run["options"].get("quick"):
            print(
                "an interrupted or --quick run is no reference: BENCHMARKS.md left alone",
                file=sys.stderr,
            )
            return 2
        report.update_md(run, REPO / "BENCHMARKS.md", png)
        print(f"updated: {REPO / 'BENCHMARKS.md'} (section {run['load']['mode']})")
    return 0


def write_results(run: dict, args) -> int:
    report.finalize(run)
    out = pathlib.Path(args.out).resolve()
    tag = run["load"]["mode"] + ("-quick" if args.quick else "")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime())
    json_path = out / f"run-{stamp}-{tag}.json"
    png_path = out / f"run-{stamp}-{tag}.png"
    print_results(run)
    no_chart = report.chart(run, png_path)
    if no_chart:
        run["notes"].append(f"no chart: {no_chart}")
        print(f"  note: no chart: {no_chart}")
        png_path = None
    report.write_json(run, json_path)
    print(f"\nresults: {json_path}" + (f"\nchart:   {png_path}" if png_path else ""))
    if run["interrupted"]:
        print(
            f"not a complete run ({run['interrupted']}): latest-{tag}.* and BENCHMARKS.md "
            f"left alone"
        )
        return 1
    shutil.copyfile(json_path, out / f"latest-{tag}.json")
    if png_path:
        shutil.copyfile(png_path, out / f"latest-{tag}.png")
    if args.update_md:
        md = REPO / "BENCHMARKS.md"
        report.update_md(run, md, png_path)
        print(f"updated: {md} (section {run['load']['mode']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
