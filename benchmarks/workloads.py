"""W1-W10: what is measured, as commands run in a subprocess against one column's view of the
dataset.

Each timed run is one subprocess measured with ``time.perf_counter`` around it, so every column
pays the same process start-up.  Everything else a workload needs (copying an index, priming a
warm cache, deleting the output) happens outside the timed span.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from .dataset import PY_IMPORT, Dataset
from .peers import Peer

# Far above any healthy run here (the slowest, sshfs reading 10,000 files cold, takes ~7 s): a
# run that reaches it means a wedged column, which is then dropped instead of retried.
RUN_TIMEOUT = 300.0
PY = sys.executable


class RunFailed(Exception):
    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


@dataclasses.dataclass
class Ctx:
    """One column's view of the dataset."""

    peer: Peer
    ds: Dataset
    workdir: pathlib.Path

    @property
    def col(self) -> str:
        return self.peer.name

    def path(self, rel: str) -> str:
        return str(self.peer.root / rel)

    def native(self, rel: str) -> pathlib.Path:
        return self.ds.root / rel


Hook = Callable[[Ctx], None]


@dataclasses.dataclass(frozen=True)
class Workload:
    key: str  # row in the report, e.g. "W4c"
    group: str  # what --only selects, e.g. "W4" (both variants) or the key itself
    title: str
    short: str  # label under the chart's bars
    cold: bool  # caches dropped (and FUSE columns remounted) before each run
    command: Callable[[Ctx], list[str]]
    env: Callable[[Ctx], dict[str, str]] = lambda ctx: {}
    # warm: an untimed run of the same command just before each timed one; with ``cold``, that
    # run is the cold one (caches dropped first) and the timed run follows it at once
    prime: bool = False
    prepare: Hook | None = None  # once per column, before the repetitions
    before: Hook | None = None  # before each run
    after: Hook | None = None  # after each run
    finish: Hook | None = None  # once per column, after the repetitions
    # Run after dropping the caches so that the tools themselves (find, python's standard
    # library) come from memory: a cold run then measures the share, not the local disk.
    prewarm: Callable[[Ctx], list[list[str]]] = lambda ctx: []
    nbytes: Callable[[Dataset], int] | None = None  # set for throughput workloads (MB/s)
    skip: str | None = None


# --- running ---------------------------------------------------------------------------------


def base_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LC_ALL": "C",
    }


def timed(
    cmd: list[str], env: dict[str, str], cwd: pathlib.Path, timeout: float = RUN_TIMEOUT
) -> float:
    """Seconds the subprocess took; RunFailed if it failed or ran past ``timeout``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Its own process group (a shell pipeline has several processes): stop all of it.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RunFailed(f"timed out after {timeout:.0f} s", timed_out=True) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        tail = err.decode(errors="replace").strip().splitlines()[-2:]
        raise RunFailed(f"exit {proc.returncode}: {' | '.join(tail) or 'no message'}")
    return elapsed


def run_untimed(cmd: list[str], env: dict[str, str], cwd: pathlib.Path) -> str:
    try:
        r = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=RUN_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise RunFailed(f"{cmd[0]} timed out after {RUN_TIMEOUT:.0f} s", timed_out=True) from None
    if r.returncode:
        tail = r.stderr.strip().splitlines()[-2:]
        raise RunFailed(f"{cmd[0]} exit {r.returncode}: {' | '.join(tail) or 'no message'}")
    return r.stdout


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


# --- the workloads ---------------------------------------------------------------------------


def _find(ctx: Ctx) -> list[str]:
    return ["find", ctx.path(Dataset.tree), "-printf", "%s\n"]


def _read_all(ctx: Ctx) -> list[str]:
    return [
        "sh",
        "-c",
        'find "$1" -type f -print0 | xargs -0 cat > /dev/null',
        "sh",
        ctx.path(Dataset.tree),
    ]


def _tools(*names: str) -> Callable[[Ctx], list[list[str]]]:
    return lambda ctx: [["sh", "-c", ":"]] + [[n, "--version"] for n in names]


# W3: each column keeps its own copy of the index.  git compares inode numbers (and the FUSE
# columns each number inodes their own way), so one shared index would be rewritten by every
# column in turn and no run would ever be warm.
def _index(ctx: Ctx, monitor: bool = False) -> str:
    return f"index-bench-{ctx.col}{'-fsmonitor' if monitor else ''}"


def _git_env(ctx: Ctx, monitor: bool = False) -> dict[str, str]:
    return {
        "GIT_INDEX_FILE": ctx.path(f"{Dataset.repo}/.git/{_index(ctx, monitor)}"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }


def _monitored(ctx: Ctx) -> bool:
    return ctx.col == "bridgefs"  # the only column with a file-system monitor


def _monitor_config(ctx: Ctx) -> list[str]:
    """W3m: bridgefs's hook as README.md sets it up (with the untracked cache, so that the
    hook's answer spares the folders' listings too); the other columns have no monitor."""
    if not _monitored(ctx):
        return []
    # The command README.md gives (`python -m` would put the work tree on sys.path: lookups
    # through the mount on every start of the hook).
    hook = f"{pathlib.Path(PY).parent / 'bridgefs'} fsmonitor"
    return ["-c", f"core.fsmonitor={hook}", "-c", "core.fsmonitorHookVersion=2",
            "-c", "core.untrackedCache=true"]  # fmt: skip


def _git_status(ctx: Ctx, *extra: str, monitor: bool = False) -> list[str]:
    # safe.directory: a FUSE column may report another owner than the one git expects.
    config = _monitor_config(ctx) if monitor else []
    return ["git", "-c", "safe.directory=*", *config, "-C", ctx.path(Dataset.repo), "status",
            *extra]  # fmt: skip


def _git_prepare(ctx: Ctx, monitor: bool = False) -> None:
    git_dir = ctx.native(f"{Dataset.repo}/.git")
    shutil.copy2(git_dir / "index", git_dir / _index(ctx, monitor))
    # This first status refreshes the stat data in the copy for this column; a tree that is not
    # clean through the mount is a filesystem bug worth stopping for.  With the monitor, the
    # first status keeps git's own timestamp as the token and the second gets the hook's.
    env = {**base_env(), **_git_env(ctx, monitor)}
    for _ in range(2 if monitor else 1):
        out = run_untimed(_git_status(ctx, "--porcelain", monitor=monitor), env, ctx.workdir)
        if out.strip():
            raise RunFailed(f"git status through {ctx.col} is not clean: {out.strip()[:200]}")


def _git_finish(ctx: Ctx, monitor: bool = False) -> None:
    (ctx.native(f"{Dataset.repo}/.git") / _index(ctx, monitor)).unlink(missing_ok=True)


def _dd_read(ctx: Ctx) -> list[str]:
    return ["dd", f"if={ctx.path(Dataset.big)}", "of=/dev/null", "bs=1M", "status=none"]


def _w6_name(ctx: Ctx) -> str:
    return f"w6-{ctx.col}.out"


def _dd_write(ctx: Ctx) -> list[str]:
    return [
        "dd",
        "if=/dev/zero",
        f"of={ctx.path(_w6_name(ctx))}",
        "bs=1M",
        f"count={ctx.ds.params.big_mib}",
        "conv=fsync",
        "status=none",
    ]


def _settle(ctx: Ctx) -> None:
    os.sync()  # the previous run's writeback and journal commits must not land in this one


def _w6_after(ctx: Ctx) -> None:
    os.unlink(ctx.path(_w6_name(ctx)))


_CREATE = """
import os, sys
d, n, data = sys.argv[1], int(sys.argv[2]), b"x" * int(sys.argv[3])
os.mkdir(d)
for i in range(n):
    with open(f"{d}/f{i:05d}.txt", "wb") as f:
        f.write(data)
"""


def _w7_dir(ctx: Ctx) -> str:
    return f"w7-{ctx.col}"


def _create(ctx: Ctx) -> list[str]:
    return [PY, "-I", "-S", "-c", _CREATE, ctx.path(_w7_dir(ctx)), "2000", "1024"]


def _remove(ctx: Ctx) -> list[str]:
    return ["rm", "-rf", ctx.path(_w7_dir(ctx))]


def _w7_clean(ctx: Ctx) -> None:
    shutil.rmtree(ctx.native(_w7_dir(ctx)), ignore_errors=True)


def _w7_before(ctx: Ctx) -> None:
    _w7_clean(ctx)
    _settle(ctx)


def _w7r_before(ctx: Ctx) -> None:
    # The files are made through the column itself, as a user's rm -rf follows their own
    # npm install: what the column caches of its own creations is part of what is measured.
    _w7_before(ctx)
    run_untimed(_create(ctx), base_env(), ctx.workdir)
    _settle(ctx)


def _import(ctx: Ctx) -> list[str]:
    # -I -S: no venv, no user site, no PYTHON* variables: only the standard library and the
    # share.  -B: the .pyc files built with the dataset are read, never rewritten.
    code = f"import sys; sys.path.insert(0, {ctx.path(Dataset.pylib)!r}); import {PY_IMPORT}"
    return [PY, "-I", "-S", "-B", "-c", code]


_stdlib_modules: list[str] = []


def _import_prewarm(ctx: Ctx) -> list[list[str]]:
    """Import the standard library modules the package needs, without the share on sys.path."""
    if not _stdlib_modules:
        pylib = str(ctx.native(Dataset.pylib))
        code = (
            f"import sys; sys.path.insert(0, {pylib!r}); import {PY_IMPORT}\n"
            f"print('\\n'.join(m for m, v in sys.modules.items()"
            f" if not (getattr(v, '__file__', None) or '').startswith({pylib!r})))"
        )
        _stdlib_modules.extend(
            run_untimed([PY, "-I", "-S", "-B", "-c", code], base_env(), ctx.workdir).split()
        )
    code = (
        f"import importlib\nfor m in {_stdlib_modules!r}:\n"
        "    try: importlib.import_module(m)\n    except Exception: pass"
    )
    return [[PY, "-I", "-S", "-B", "-c", code]]


def _import_prepare(ctx: Ctx) -> None:
    # The copy on the share must be what gets imported, not the venv's.
    out = run_untimed(
        [
            PY,
            "-I",
            "-S",
            "-B",
            "-c",
            f"import sys; sys.path.insert(0, {ctx.path(Dataset.pylib)!r}); "
            f"import {PY_IMPORT}; print({PY_IMPORT}.__file__)",
        ],
        base_env(),
        ctx.workdir,
    )
    if not out.strip().startswith(ctx.path(Dataset.pylib)):
        raise RunFailed(f"{PY_IMPORT} was imported from {out.strip()}, not from the share")


_PROBE = """
import os, sys
root = sys.argv[1]
names = open(sys.argv[2]).read().split()
missing = 0
for name in names:
    try:
        os.stat(root + "/" + name)
    except FileNotFoundError:
        missing += 1
if missing != len(names):
    sys.exit(f"{len(names) - missing} of {len(names)} probed names exist")
"""


def _probe(ctx: Ctx) -> list[str]:
    return [PY, "-I", "-S", "-c", _PROBE, str(ctx.peer.root), str(ctx.ds.probes)]


def _big_bytes(ds: Dataset) -> int:
    return (ds.root / Dataset.big).stat().st_size


def _write_bytes(ds: Dataset) -> int:
    return ds.params.big_mib << 20


# W10 (host change -> event in a watcher in the VM, and -> new content readable) is a latency
# distribution, not a time per run: benchmarks/latency.py measures it (p50/p99 over 200 changes).
W10_NOTE = "measured by `python -m benchmarks.latency` (p50/p99 over 200 changes)"


WORKLOADS: list[Workload] = [
    Workload(
        "W1",
        "W1",
        "metadata walk, cold (find -printf %s)",
        "walk cold",
        True,
        _find,
        prewarm=_tools("find"),
    ),
    Workload("W2", "W2", "metadata walk, warm", "walk warm", False, _find, prime=True),
    Workload(
        "W2c",
        "W2",
        "metadata walk at once after a cold one (the second find)",
        "walk after cold",
        True,
        _find,
        prime=True,
        prewarm=_tools("find"),
    ),
    Workload(
        "W3",
        "W3",
        "git status, warm",
        "git status",
        False,
        lambda ctx: _git_status(ctx),
        env=_git_env,
        prime=True,
        prepare=_git_prepare,
        finish=_git_finish,
    ),
    Workload(
        "W3m",
        "W3",
        "git status, warm, with the file-system monitor (bridgefs only: the others have none)",
        "git status, monitor",
        False,
        lambda ctx: _git_status(ctx, monitor=True),
        env=lambda ctx: _git_env(ctx, monitor=True),
        prime=True,
        prepare=lambda ctx: _git_prepare(ctx, monitor=True),
        finish=lambda ctx: _git_finish(ctx, monitor=True),
    ),
    Workload(
        "W4c",
        "W4",
        "read every small file, cold (find, xargs cat)",
        "read cold",
        True,
        _read_all,
        prewarm=_tools("find", "xargs", "cat"),
    ),
    Workload("W4w", "W4", "read every small file, warm", "read warm", False, _read_all, prime=True),
    Workload(
        "W5c",
        "W5",
        "sequential read of the big file, cold (dd bs=1M)",
        "big read cold",
        True,
        _dd_read,
        prewarm=_tools("dd"),
        nbytes=_big_bytes,
    ),
    Workload(
        "W5w",
        "W5",
        "sequential read of the big file, warm",
        "big read warm",
        False,
        _dd_read,
        prime=True,
        nbytes=_big_bytes,
    ),
    Workload(
        "W6",
        "W6",
        "sequential write + fsync (dd conv=fsync)",
        "big write",
        False,
        _dd_write,
        before=_settle,
        after=_w6_after,
        nbytes=_write_bytes,
    ),
    Workload(
        "W7c",
        "W7",
        "create 2,000 files of 1 KiB (one Python process)",
        "create",
        False,
        _create,
        before=_w7_before,
        after=_w7_clean,
    ),
    Workload(
        "W7r",
        "W7",
        "rm -rf of those 2,000 files",
        "rm -rf",
        False,
        _remove,
        before=_w7r_before,
        after=_w7_clean,
    ),
    Workload(
        "W8c",
        "W8",
        f"python import {PY_IMPORT} from the share, cold",
        "import cold",
        True,
        _import,
        prepare=_import_prepare,
        prewarm=_import_prewarm,
    ),
    Workload(
        "W8w",
        "W8",
        f"python import {PY_IMPORT} from the share, warm",
        "import warm",
        False,
        _import,
        prime=True,
        prepare=_import_prepare,
    ),
    Workload(
        "W9",
        "W9",
        "stat 10,000 missing names, warm (autoloader probes)",
        "missing names",
        False,
        _probe,
        prime=True,
    ),
    Workload(
        "W10", "W10", "host change -> event latency", "events", False, lambda ctx: [], skip=W10_NOTE
    ),
]


def remove_leftovers(ds: Dataset) -> None:
    """What an interrupted run may have left on the share: W6's output, W7's directory, W3's
    per-column index copies."""
    for path in ds.root.glob("w6-*.out"):
        path.unlink()
    for path in ds.root.glob("w7-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in (ds.root / Dataset.repo / ".git").glob("index-bench-*"):
        path.unlink()


def select(only: str | None) -> list[Workload]:
    if not only:
        return list(WORKLOADS)
    wanted = {w.strip().upper() for w in only.split(",") if w.strip()}
    known = {w.key.upper() for w in WORKLOADS} | {w.group.upper() for w in WORKLOADS}
    unknown = wanted - known
    if unknown:
        raise SystemExit(
            f"unknown workload(s) {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(w.key for w in WORKLOADS)}"
        )
    return [w for w in WORKLOADS if w.key.upper() in wanted or w.group.upper() in wanted]
