"""The shared folder every column exposes: a source tree, a git clone of it, a big file, a Python
package.

The dataset is built once per set of parameters under ``WORKDIR/data-<hash>`` (built in a
``.partial`` directory and renamed, so an interrupted build is never mistaken for a finished
one) and reused by later runs with the same parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import pathlib
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

# Bump when the layout or the generator changes, so old datasets are not reused.
FORMAT = 3

# What W8 imports.  hypothesis is pure Python with ~80 modules and pulls in ~150 standard library
# modules: a realistic "import a big library from a project folder" case.  Its only dependency
# and its top-level helper modules are copied too, so that with ``python -I -S`` nothing of it
# comes from the venv.
PY_IMPORT = "hypothesis"
PY_COPY = ("hypothesis", "sortedcontainers", "_hypothesis_globals", "_hypothesis_ftz_detector")

MISSING_PROBES = 10_000

_TOP_DIRS = [
    "src",
    "app",
    "vendor",
    "node_modules",
    "public",
    "resources",
    "tests",
    "config",
    "lib",
    "assets",
]
_DIR_WORDS = [
    "components",
    "utils",
    "Controller",
    "Model",
    "View",
    "Http",
    "Middleware",
    "services",
    "hooks",
    "store",
    "api",
    "Console",
    "Events",
    "Jobs",
    "Listeners",
    "Mail",
    "Policies",
    "Providers",
    "Rules",
    "dist",
    "esm",
    "cjs",
    "types",
    "locales",
    "fixtures",
    "helpers",
    "core",
    "plugins",
    "modules",
    "admin",
    "auth",
    "billing",
    "orders",
    "users",
    "forms",
    "layouts",
    "pages",
    "styles",
    "icons",
    "migrations",
    "factories",
    "Feature",
    "Unit",
    "Support",
    "Contracts",
    "Exceptions",
    "Traits",
    "Routing",
    "Database",
    "Cache",
    "Queue",
    "Session",
    "Validation",
    "internal",
]
_FILE_WORDS = [
    "User",
    "Order",
    "Invoice",
    "Payment",
    "Cart",
    "Product",
    "Account",
    "Session",
    "Token",
    "Router",
    "Request",
    "Response",
    "Handler",
    "Service",
    "Factory",
    "Repository",
    "Manager",
    "Provider",
    "Helper",
    "Validator",
    "Listener",
    "Event",
    "Query",
    "Builder",
    "Client",
    "Config",
    "Logger",
    "Cache",
    "Store",
    "Index",
    "Form",
    "Button",
    "Modal",
    "Table",
    "List",
    "Item",
    "Menu",
    "Header",
    "Footer",
]
_EXTENSIONS = [
    (".js", 35),
    (".php", 30),
    (".ts", 10),
    (".json", 8),
    (".css", 5),
    (".md", 4),
    (".vue", 4),
    (".html", 4),
]
_CODE_TOKENS = [
    "function",
    "return",
    "const",
    "let",
    "if",
    "else",
    "for",
    "while",
    "class",
    "public",
    "private",
    "static",
    "new",
    "this",
    "$this->",
    "=>",
    "import",
    "from",
    "export",
    "default",
    "namespace",
    "use",
    "array",
    "null",
    "true",
    "false",
    "await",
    "async",
    "throw",
    "try",
    "catch",
    "(",
    ")",
    "{",
    "}",
    ";",
    "=",
    "+",
    "'value'",
    '"key"',
    "0",
    "1",
    "42",
    "$request",
    "options",
    "props",
    "state",
]


@dataclasses.dataclass(frozen=True)
class Params:
    files: int = 10_000
    dirs: int = 600
    depth: int = 6
    min_size: int = 200
    max_size: int = 8192
    big_mib: int = 512
    seed: int = 20240611

    def key(self) -> str:
        versions = {name: _package_version(name) for name in PY_COPY}
        blob = json.dumps(
            {
                "format": FORMAT,
                "params": dataclasses.asdict(self),
                # The .pyc files are only valid for the interpreter that W8 runs.
                "cache_tag": sys.implementation.cache_tag,
                "packages": versions,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


@dataclasses.dataclass(frozen=True)
class Dataset:
    root: pathlib.Path  # the folder every column shares
    params: Params
    probes: pathlib.Path  # W9's list of missing names, kept outside the share

    # Paths relative to the share's root, so each column can prefix its own mount point.
    tree = "tree"
    repo = "repo"
    big = "big.bin"
    pylib = "pylib"

    def manifest(self) -> dict:
        return json.loads((self.root / ".bench-dataset.json").read_text())


def ensure(workdir: pathlib.Path, params: Params, log: Callable[[str], None]) -> Dataset:
    """Return the dataset for ``params``, building it only if no finished one exists."""
    workdir.mkdir(parents=True, exist_ok=True)
    key = params.key()
    root = workdir / f"data-{key}"
    probes = workdir / f"data-{key}.probes"
    if root.is_dir() and probes.is_file():
        log(f"dataset: reusing {root}")
        return Dataset(root, params, probes)
    partial = workdir / f"data-{key}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    started = time.monotonic()
    log(f"dataset: building {root} ({params.files} files, {params.big_mib} MiB big file)")
    dirs = _build_tree(partial / Dataset.tree, params)
    _build_repo(partial / Dataset.tree, partial / Dataset.repo)
    _build_big(partial / Dataset.big, params.big_mib)
    _build_pylib(partial / Dataset.pylib)
    probe_names = _missing_names(dirs, params.seed)
    (partial / ".bench-dataset.json").write_text(
        json.dumps(
            {
                "params": dataclasses.asdict(params),
                "key": key,
                "dirs": len(dirs) - 1,
                "max_depth": max(d.count("/") + 1 for d in dirs if d),
                "tree_bytes": _tree_bytes(partial / Dataset.tree),
                "py_import": PY_IMPORT,
                "py_packages": {name: _package_version(name) for name in PY_COPY},
                "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            indent=1,
        )
    )
    tmp = probes.with_suffix(".tmp")
    tmp.write_text("".join(f"{Dataset.tree}/{n}\n" for n in probe_names))
    os.sync()
    tmp.rename(probes)
    if root.exists():  # a finished dataset without its probe list: an older interrupted build
        shutil.rmtree(root)
    partial.rename(root)
    log(f"dataset: built in {time.monotonic() - started:.1f} s")
    return Dataset(root, params, probes)


def _build_tree(top: pathlib.Path, p: Params) -> list[str]:
    """A JavaScript/PHP-looking tree; returns its directories ("" is the top)."""
    rng = random.Random(p.seed)
    dirs = [""]
    depth = {"": 0}
    children: dict[str, set[str]] = {"": set()}
    for i in range(p.dirs):
        if i < len(_TOP_DIRS):
            parent, name = "", _TOP_DIRS[i]
        else:
            # A uniformly chosen parent gives a few deep chains and many shallow dirs, like
            # real projects; the cap keeps the deepest paths at ``depth`` levels.
            parent = rng.choice([d for d in dirs if 0 < depth[d] < p.depth])
            name = rng.choice(_DIR_WORDS)
        base, n = name, 1
        while name in children[parent]:
            n += 1
            name = f"{base}{n}"
        children[parent].add(name)
        path = f"{parent}/{name}" if parent else name
        dirs.append(path)
        depth[path] = depth[parent] + 1
        children[path] = set()
    for d in dirs:
        (top / d).mkdir(parents=True, exist_ok=True)

    pool = " ".join(
        rng.choice(_CODE_TOKENS) + ("\n" if rng.random() < 0.12 else "") for _ in range(60_000)
    ).encode()
    exts = [e for e, _ in _EXTENSIONS]
    weights = [w for _, w in _EXTENSIONS]
    log_min, log_max = math.log(p.min_size), math.log(p.max_size)
    taken: dict[str, set[str]] = {d: set() for d in dirs}
    for _ in range(p.files):
        d = rng.choice(dirs[1:])
        while True:
            name = rng.choice(_FILE_WORDS) + rng.choice(_FILE_WORDS)
            if rng.random() < 0.5:
                name += str(rng.randrange(100))
            name += rng.choices(exts, weights)[0]
            if name not in taken[d]:
                taken[d].add(name)
                break
        size = int(math.exp(rng.uniform(log_min, log_max)))
        offset = rng.randrange(len(pool) - size)
        (top / d / name).write_bytes(pool[offset : offset + size])
    return dirs


def _git(cwd: pathlib.Path, *args: str) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "LC_ALL": "C",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@localhost",
        "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    }
    # gc.auto=0: commit would otherwise start a background gc that races the explicit one.
    subprocess.run(
        ["git", "-c", "gc.auto=0", *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL
    )


def _build_repo(tree: pathlib.Path, repo: pathlib.Path) -> None:
    # A copy rather than a .git inside tree/: W1 and W4 then walk exactly the source files, and
    # W3 gets a working tree of the same shape.
    shutil.copytree(tree, repo)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "benchmark dataset")
    # Packed objects: .git holds a handful of files instead of one per blob.
    _git(repo, "gc", "-q", "--prune=now")


def _build_big(path: pathlib.Path, mib: int) -> None:
    # Random bytes so that nothing on the way (sshfs compression, a future bridgefs codec) can
    # shrink the transfer.
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())


def _package_source(name: str) -> pathlib.Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"W8 needs the Python module {name!r} in {sys.executable}'s "
            f"environment (pip install -e '.[test]' brings it)"
        )
    origin = pathlib.Path(spec.origin)
    return origin.parent if spec.submodule_search_locations else origin


def _package_version(name: str) -> str | None:
    try:
        import importlib.metadata as md

        dist = {"_hypothesis_globals": "hypothesis", "_hypothesis_ftz_detector": "hypothesis"}.get(
            name, name
        )
        return md.version(dist)
    except Exception:
        return None


def _build_pylib(dest: pathlib.Path) -> None:
    dest.mkdir()
    for name in PY_COPY:
        src = _package_source(name)
        if src.is_dir():
            shutil.copytree(src, dest / src.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / src.name)
    # Byte code compiled now, by the interpreter W8 runs, and W8 runs with -B: every import
    # then reads the same .py (for its mtime) and .pyc files and nothing is ever written to the
    # share, so cold and warm runs of every column do the same work.
    subprocess.run(
        [sys.executable, "-I", "-m", "compileall", "-q", "-j", "0", str(dest)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _missing_names(dirs: list[str], seed: int) -> list[str]:
    # Spread over the real directories, as an autoloader probes each include path in turn.
    rng = random.Random(seed + 1)
    real = [d for d in dirs if d]
    return [
        f"{rng.choice(real)}/Missing{rng.choice(_FILE_WORDS)}{i}.php" for i in range(MISSING_PROBES)
    ]


def _tree_bytes(top: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in top.rglob("*") if f.is_file())
