"""Real programs working in a mounted share: git, tar + diff, compileall + import, sqlite3, rsync.

A missing program is a failure naming its Debian package (scripts/setup.sh installs them)."""

from __future__ import annotations

import os
import pathlib
import random
import sqlite3
import subprocess
import sys

import pytest

from remotekit import git_env, require_program, run


def make_tree(root: pathlib.Path, seed: int = 0) -> None:
    """A generated tree: nested directories, files of assorted sizes and modes, empty files,
    a symlink, names with spaces, and set mtimes."""
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for d in ["a", "a/b", "a/b/c", "empty dir", "x"]:
        (root / d).mkdir(parents=True, exist_ok=True)
    files = [
        "top.txt",
        "a/one",
        "a/b/two.bin",
        "a/b/c/three",
        "x/with space.txt",
        "x/empty",
        "a/b/c/big.bin",
    ]
    for i, name in enumerate(files):
        size = {"x/empty": 0, "a/b/c/big.bin": 3 * 1024 * 1024 + 11}.get(
            name, rnd.randrange(1, 70_000)
        )
        p = root / name
        p.write_bytes(rnd.randbytes(size))
        os.chmod(p, [0o644, 0o600, 0o755, 0o640][i % 4])
        os.utime(
            p,
            ns=(
                1_600_000_000_000_000_000 + i * 1_000_000_007,
                1_600_000_000_123_456_789 + i * 1_000_000_007,
            ),
        )
    for i in range(40):
        (root / "x" / f"small-{i:02d}").write_bytes(rnd.randbytes(rnd.randrange(0, 300)))
    os.symlink("../top.txt", root / "a" / "link-to-top")
    os.chmod(root / "a" / "b", 0o750)
    # Directory mtimes last (filling a directory changes its mtime), each its own, in the past:
    # rsync does not set a directory's mtime that is within the same second as its own.
    for i, d in enumerate(["a/b/c", "a/b", "a", "empty dir", "x", "."]):
        os.utime(root / d, ns=(1_500_000_000_000_000_000, 1_500_000_000_987_654_321 + i * 1_001))


def test_git_init_add_commit_status(unix_share, tmp_path):
    git = require_program("git", "git")
    host, mnt, _ = unix_share
    env = git_env(tmp_path)
    repo = mnt / "repo"
    make_tree(repo)
    run([git, "init", "-q", "-b", "main"], cwd=repo, env=env)
    run([git, "add", "-A"], cwd=repo, env=env)
    run([git, "commit", "-q", "-m", "first"], cwd=repo, env=env)
    assert run([git, "status", "--porcelain"], cwd=repo, env=env) == ""
    # A change is seen, committed, and the tree is clean again.
    (repo / "top.txt").write_bytes(b"changed\n")
    assert run([git, "status", "--porcelain"], cwd=repo, env=env) == " M top.txt\n"
    run([git, "commit", "-q", "-am", "second"], cwd=repo, env=env)
    assert run([git, "status", "--porcelain"], cwd=repo, env=env) == ""
    assert run([git, "log", "--format=%s"], cwd=repo, env=env) == "second\nfirst\n"
    run([git, "fsck", "--strict"], cwd=repo, env=env)
    # The repository is a real one on the host, where git agrees.
    assert run([git, "status", "--porcelain"], cwd=host / "repo", env=env) == ""
    assert run([git, "rev-parse", "HEAD"], cwd=host / "repo", env=env) == run(
        [git, "rev-parse", "HEAD"], cwd=repo, env=env
    )


def test_tar_extract_and_diff(unix_share, tmp_path):
    tar = require_program("tar", "tar")
    diff = require_program("diff", "diffutils")
    host, mnt, _ = unix_share
    src = tmp_path / "src"
    make_tree(src, seed=1)
    archive = tmp_path / "tree.tar"
    run([tar, "-cf", str(archive), "-C", str(src), "."])
    (mnt / "out").mkdir()
    run([tar, "-xpf", str(archive), "-C", str(mnt / "out")])
    run([diff, "-r", "--no-dereference", str(src), str(mnt / "out")])
    run([diff, "-r", "--no-dereference", str(src), str(host / "out")])
    # tar restores modes and mtimes (to the second in a ustar/gnu archive).
    for rel in ["top.txt", "a/b/c/big.bin", "a/b"]:
        a, b = os.stat(src / rel), os.stat(mnt / "out" / rel)
        assert (a.st_mode, int(a.st_mtime)) == (b.st_mode, int(b.st_mtime)), rel
    # And an archive made of the mount extracts to the same tree again.
    run([tar, "-cf", str(tmp_path / "back.tar"), "-C", str(mnt / "out"), "."])
    (tmp_path / "back").mkdir()
    run([tar, "-xpf", str(tmp_path / "back.tar"), "-C", str(tmp_path / "back")])
    run([diff, "-r", "--no-dereference", str(src), str(tmp_path / "back")])


def test_compileall_then_import(unix_share):
    host, mnt, _ = unix_share
    pkg = mnt / "pkg_on_mount"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .alpha import A\nfrom .beta import twice\n")
    (pkg / "alpha.py").write_text("A = 'alpha' * 3\n")
    (pkg / "beta.py").write_text("def twice(x):\n    return 2 * x\n")
    (mnt / "single_mod.py").write_text("VALUE = sum(range(10))\n")
    run([sys.executable, "-m", "compileall", "-q", str(mnt)])
    caches = sorted(p.name for p in (pkg / "__pycache__").iterdir())
    tag = sys.implementation.cache_tag
    assert caches == sorted(f"{m}.{tag}.pyc" for m in ["__init__", "alpha", "beta"])
    assert (host / "__pycache__" / f"single_mod.{tag}.pyc").exists()
    code = (
        "import sys, pkg_on_mount, single_mod; "
        "assert pkg_on_mount.A == 'alphaalphaalpha' and pkg_on_mount.twice(21) == 42; "
        "assert single_mod.VALUE == 45; "
        "assert pkg_on_mount.alpha.__cached__.endswith('.pyc'); "
        "print(pkg_on_mount.__file__)"
    )
    # The import loads the code objects from the .pyc files compileall wrote (-v says which
    # file each comes from) and writes nothing (-B).
    before = {p: p.stat().st_mtime_ns for p in host.rglob("*.pyc")}
    proc = subprocess.run(
        [sys.executable, "-B", "-v", "-c", code],
        cwd=mnt,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(mnt)),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(pkg / "__init__.py")
    for mod in ["__init__", "alpha", "beta"]:
        assert f"# code object from '{pkg / '__pycache__' / f'{mod}.{tag}.pyc'}'" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in host.rglob("*.pyc")} == before
    # A stale .pyc is noticed: change the source, import again, the new code runs and the .pyc
    # is rewritten (the source's mtime and size through the mount no longer match it).
    pyc = host / "pkg_on_mount" / "__pycache__" / f"beta.{tag}.pyc"
    old_pyc = pyc.read_bytes()
    (pkg / "beta.py").write_text("VERSION = 2\n\ndef twice(x):\n    return x + x\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = run(
        [sys.executable, "-c", "import pkg_on_mount.beta as b; print(b.VERSION, b.twice(4))"],
        cwd=mnt,
        env=dict(env, PYTHONPATH=str(mnt)),
    )
    assert out == "2 8\n"
    assert pyc.read_bytes() != old_pyc


ROWS = 1000


def _check_db(path: pathlib.Path) -> None:
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = con.execute("SELECT id, name, blob FROM t ORDER BY id").fetchall()
    finally:
        con.close()
    assert len(rows) == ROWS
    for i, (rid, name, blob) in enumerate(rows):
        assert (rid, name, blob) == (i, f"row {i}", bytes([i % 256]) * (i % 50))


def test_sqlite3_cli(unix_share):
    sqlite = require_program("sqlite3", "sqlite3")
    host, mnt, _ = unix_share
    db = mnt / "cli.db"
    script = ["CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, blob BLOB);", "BEGIN;"]
    script += [
        f"INSERT INTO t VALUES ({i}, 'row {i}', X'{(bytes([i % 256]) * (i % 50)).hex()}');"
        for i in range(ROWS)
    ]
    script += ["COMMIT;"]
    run([sqlite, str(db)], input="\n".join(script) + "\n")
    assert (
        run([sqlite, str(db), "SELECT count(*), sum(id) FROM t;"]) == f"{ROWS}|{sum(range(ROWS))}\n"
    )
    _check_db(db)
    _check_db(host / "cli.db")
    assert not (mnt / "cli.db-journal").exists()


@pytest.mark.parametrize("journal", ["DELETE", "WAL"])
def test_sqlite3_module(unix_share, journal):
    host, mnt, _ = unix_share
    db = mnt / "mod.db"
    con = sqlite3.connect(db, isolation_level=None)
    try:
        assert con.execute(f"PRAGMA journal_mode={journal}").fetchone()[0].upper() == journal
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, blob BLOB)")
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO t VALUES (?, ?, ?)",
            ((i, f"row {i}", bytes([i % 256]) * (i % 50)) for i in range(ROWS)),
        )
        con.execute("COMMIT")
        # A second connection (its own locks) reads them while the first is open.
        other = sqlite3.connect(db)
        try:
            assert other.execute("SELECT count(*) FROM t").fetchone() == (ROWS,)
        finally:
            other.close()
        # A rolled-back transaction leaves nothing behind.
        con.execute("BEGIN")
        con.execute("DELETE FROM t")
        con.execute("ROLLBACK")
    finally:
        con.close()
    _check_db(db)
    _check_db(host / "mod.db")


def test_sqlite3_locking_between_processes(unix_share):
    """A writer in another process holds the database lock: this one gets 'database is locked'."""
    _, mnt, _ = unix_share
    db = mnt / "lock.db"
    sqlite3.connect(db).executescript("CREATE TABLE t (x); INSERT INTO t VALUES (1);").close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read(); "
            "c.execute('COMMIT')",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        con = sqlite3.connect(db, timeout=0)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                con.execute("INSERT INTO t VALUES (2)")
        finally:
            con.close()
    finally:
        holder.stdin.close()
        assert holder.wait(30) == 0
        holder.stdout.close()
    con = sqlite3.connect(db)
    try:
        con.execute("INSERT INTO t VALUES (3)")
        con.commit()
        assert con.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (3,)]
    finally:
        con.close()


def _tree_facts(root: pathlib.Path) -> dict:
    facts = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = pathlib.Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if os.path.islink(p):
                facts[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                facts[rel] = ("dir", st.st_mode, st.st_mtime_ns)
            else:
                facts[rel] = ("file", st.st_mode, st.st_mtime_ns, p.read_bytes())
    return facts


def test_rsync_round_trip(unix_share, tmp_path):
    rsync = require_program("rsync", "rsync")
    host, mnt, _ = unix_share
    src = tmp_path / "src"
    make_tree(src, seed=2)
    want = _tree_facts(src)
    run([rsync, "-a", f"{src}/", f"{mnt / 'copy'}/"])
    assert _tree_facts(mnt / "copy") == want
    assert _tree_facts(host / "copy") == want
    back = tmp_path / "back"
    run([rsync, "-a", f"{mnt / 'copy'}/", f"{back}/"])
    assert _tree_facts(back) == want
    # A second rsync finds nothing to transfer (sizes and mtimes match through the mount).
    out = run([rsync, "-a", "--itemize-changes", f"{src}/", f"{mnt / 'copy'}/"])
    assert out == ""
    # An update through rsync: one file changed at the source goes over, nothing else.
    (src / "top.txt").write_bytes(b"updated\n")
    os.utime(src / "top.txt", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_001))
    out = run([rsync, "-a", "--itemize-changes", f"{src}/", f"{mnt / 'copy'}/"])
    assert [line.split(" ", 1)[1] for line in out.splitlines()] == ["top.txt"]
    assert _tree_facts(host / "copy") == _tree_facts(src)
