"""An fsstress-style exerciser: several processes making random changes in one directory tree
(create, write, truncate, rename, link, unlink, mkdir, rmdir, chmod), then, after a sync, the
tree on the mount compared with the host folder it shares: names, types, sizes, sha256 of the
contents, modes and link counts.

The processes draw names from a small set so that their operations collide (a rename of a
directory another one writes in, an unlink of a file just linked).  An operation may fail the way
such collisions fail on any filesystem (ENOENT, EEXIST, ENOTEMPTY, ...); any other error is a
failure of the run.  The guest's modes are compared with the host's through the ownership
overlay's record (``user.bridgefs.owner``) where there is one, as the server shows them.

    python -m tests.exercise.fsstress MOUNT_DIR --host HOST_DIR --procs 4 --ops 300 --seed 1
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import random
import stat
import subprocess
import sys
import time

# Collisions between the processes, and the tree's own shape, make these.
EXPECTED = {
    errno.ENOENT,
    errno.EEXIST,
    errno.ENOTEMPTY,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EINVAL,  # a directory renamed into itself
    errno.EMLINK,
}
DIRS = ["d0", "d1", "d2"]
FILES = [f"f{i}" for i in range(6)]
OWNER_XATTR = "user.bridgefs.owner"


def _dir(rng: random.Random) -> str:
    depth = rng.randrange(3)
    return os.path.join(*[rng.choice(DIRS) for _ in range(depth)]) if depth else ""


def _file(rng: random.Random) -> str:
    return os.path.join(_dir(rng), rng.choice(FILES))


def worker(root: str, seed: int, ops: int) -> int:
    rng = random.Random(seed)

    def at(rel: str) -> str:
        return os.path.join(root, rel)

    def create() -> None:
        os.close(os.open(at(_file(rng)), os.O_CREAT | os.O_WRONLY, 0o644))

    def write() -> None:
        fd = os.open(at(_file(rng)), os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            os.pwrite(fd, rng.randbytes(rng.randrange(1, 32 << 10)), rng.randrange(64 << 10))
        finally:
            os.close(fd)

    def truncate() -> None:
        os.truncate(at(_file(rng)), rng.randrange(96 << 10))

    def rename() -> None:
        if rng.random() < 0.3:
            os.rename(at(_dir(rng) or DIRS[0]), at(os.path.join(_dir(rng), rng.choice(DIRS))))
        else:
            os.rename(at(_file(rng)), at(_file(rng)))

    def link() -> None:
        os.link(at(_file(rng)), at(_file(rng)))

    def unlink() -> None:
        os.unlink(at(_file(rng)))

    def mkdir() -> None:
        os.mkdir(at(os.path.join(_dir(rng), rng.choice(DIRS))), 0o755)

    def rmdir() -> None:
        os.rmdir(at(os.path.join(_dir(rng), rng.choice(DIRS))))

    def chmod() -> None:
        os.chmod(at(rng.choice([_file(rng), _dir(rng) or DIRS[0]])), rng.choice([0o755, 0o700]))

    table = [
        (create, 10),
        (write, 20),
        (truncate, 6),
        (rename, 8),
        (link, 5),
        (unlink, 8),
        (mkdir, 8),
        (rmdir, 4),
        (chmod, 5),
    ]
    calls, weights = [c for c, _ in table], [w for _, w in table]
    for n in range(ops):
        call = rng.choices(calls, weights)[0]
        try:
            call()
        except OSError as exc:
            if exc.errno not in EXPECTED:
                print(f"fsstress worker {seed}: op {n} {call.__name__}: {exc}", file=sys.stderr)
                return 1
    return 0


def _mode(path: str, st: os.stat_result, overlay: bool) -> int:
    if overlay:
        try:
            parts = os.getxattr(path, OWNER_XATTR, follow_symlinks=False).split()
            if len(parts) == 5 and parts[0] == b"v1":
                return stat.S_IMODE(int(parts[3], 8))
        except OSError:
            pass
    return stat.S_IMODE(st.st_mode)


def snapshot(top: str, overlay: bool = False) -> dict[str, tuple]:
    """relative path -> (type, mode, link count, size, sha256) of everything under ``top``;
    ``overlay``: ``top`` is the host folder, whose guest modes are in the overlay's record."""
    found: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, top)
            digest = ""
            size = st.st_size
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISDIR(st.st_mode):
                size = 0  # a directory's size is the host filesystem's business
            kind = stat.S_IFMT(st.st_mode)
            found[rel] = (kind, oct(_mode(path, st, overlay)), st.st_nlink, size, digest)
    return found


def compare(mount: str, host: str) -> list[str]:
    seen, truth = snapshot(mount), snapshot(host, overlay=True)
    problems = []
    for rel in sorted(set(seen) | set(truth)):
        a, b = seen.get(rel), truth.get(rel)
        if a != b:
            problems.append(f"{rel}: mount {a}, host {b}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="an empty directory on the mount")
    parser.add_argument("--host", help="the same directory on the host: compared at the end")
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--ops", type=int, default=300, help="operations per process")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args.root, args.worker, args.ops)
    started = time.monotonic()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.exercise.fsstress", args.root, "--ops", str(args.ops)]
            + ["--worker", str(args.seed * 1000 + i)]
        )
        for i in range(args.procs)
    ]
    failed = [p.args for p in workers if p.wait() != 0]
    if failed:
        print(f"fsstress: {len(failed)} of {args.procs} processes failed", file=sys.stderr)
        return 1
    os.sync()
    took = time.monotonic() - started
    if args.host:
        problems = compare(args.root, args.host)
        if problems:
            print(
                f"fsstress: the mount and the host differ after sync (seed {args.seed}):",
                file=sys.stderr,
            )
            print("\n".join(problems[:50]), file=sys.stderr)
            return 1
    total = args.procs * args.ops
    entries = len(snapshot(args.root))
    print(f"fsstress: {total} operations in {took:.1f} s, {entries} entries at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
