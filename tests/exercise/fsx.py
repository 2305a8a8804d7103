"""An fsx-style file exerciser: one file, a seeded sequence of random operations, each checked
against an in-memory shadow of the file's bytes and size.

Modelled on xfstests' fsx (not packaged by Debian, hence this one): writes, reads, truncates
up and down, fallocate (keeping the size or extending it), punch hole, zero range, collapse and
insert range, copy_file_range within the file, reads and writes through mmap (``--mmap``),
fsync, and close/reopen now and then.  Every operation is followed by a check of the size the
kernel reports (fstat); reads, a reopen and the end check the bytes.  An operation the
filesystem answers EOPNOTSUPP (FUSE has no collapse or insert range) is skipped from then on,
as fsx does.  The same seed gives the same operations on a filesystem that behaves.

On a mismatch it prints the last operations and the first offset that differs, and exits 1.
Written bytes carry the number of the operation that wrote them (as fsx's do): byte =
(op + offset % 255) % 256, never 0, so a wrong byte tells which operation it came from.

    python -m tests.exercise.fsx PATH --ops N --seed S [--mmap] [--host-copy HOSTPATH]
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import ctypes.util
import errno
import faulthandler
import mmap
import os
import random
import sys
import time
from collections.abc import Callable

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
BLOCK = 4096  # collapse and insert take whole blocks of the host filesystem
LOG_OPS = 50
UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV)

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]

# Written bytes: PATTERN[offset % 255 :] shifted by the operation's number (a translate table).
_PATTERN = bytes(range(255)) * (2 + (1 << 20) // 255)


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def pattern(op: int, offset: int, size: int) -> bytes:
    table = bytes(((i + op) % 256) or 1 for i in range(256))
    start = offset % 255
    return _PATTERN[start : start + size].translate(table)


class Mismatch(Exception):
    pass


class Fsx:
    def __init__(
        self,
        path: str,
        seed: int,
        use_mmap: bool,
        max_len: int = 256 << 10,
        max_op: int = 64 << 10,
        reopen_every: int = 100,
        out: Callable[[str], None] = print,
    ):
        self.path = path
        self.rng = random.Random(seed)
        self.use_mmap = use_mmap
        self.max_len = max_len
        self.max_op = max_op
        self.reopen_every = reopen_every
        self.out = out
        self.good = bytearray()
        self.log: collections.deque[str] = collections.deque(maxlen=LOG_OPS)
        self.op = 0
        self.skipped: dict[str, str] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.ops: list[tuple[str, int, Callable[[], None]]] = [
            ("write", 20, self.do_write),
            ("read", 20, self.do_read),
            ("truncate", 8, self.do_truncate),
            ("fallocate", 5, self.do_fallocate),
            ("punch_hole", 5, self.do_punch_hole),
            ("zero_range", 5, self.do_zero_range),
            ("collapse_range", 3, self.do_collapse_range),
            ("insert_range", 3, self.do_insert_range),
            ("copy_range", 6, self.do_copy_range),
            ("fsync", 2, self.do_fsync),
        ]
        if use_mmap:
            self.ops += [("mapwrite", 10, self.do_mapwrite), ("mapread", 10, self.do_mapread)]

    # --- the run ------------------------------------------------------------------------------
    def run(self, ops: int) -> None:
        names = [name for name, _, _ in self.ops]
        weights = [weight for _, weight, _ in self.ops]
        calls = {name: call for name, _, call in self.ops}
        while self.op < ops:
            name = self.rng.choices(names, weights)[0]
            if name in self.skipped:
                continue  # (a draw of its own: the same seed gives the same run on one fs)
            self.op += 1
            calls[name]()
            self.check_size(name)
            if self.reopen_every and self.rng.randrange(self.reopen_every) == 0:
                self.reopen()
        self.do_fsync()
        self.check_all("the end")

    def close(self) -> None:
        os.close(self.fd)

    def note(self, text: str) -> None:
        self.log.append(f"{self.op:7d} {text}")

    def _unsupported(self, name: str, exc: OSError) -> bool:
        if exc.errno not in UNSUPPORTED:
            return False
        self.skipped[name] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        self.note(f"{name}: {self.skipped[name]}, skipped from now on")
        return True

    def _range(self, max_len: int | None = None) -> tuple[int, int]:
        offset = self.rng.randrange(self.max_len)
        size = self.rng.randrange(1, (max_len or self.max_op) + 1)
        return offset, min(size, self.max_len - offset)

    def _resize(self, size: int) -> None:
        if size < len(self.good):
            del self.good[size:]
        else:
            self.good.extend(bytes(size - len(self.good)))

    # --- operations ---------------------------------------------------------------------------
    def do_write(self) -> None:
        offset, size = self._range()
        data = pattern(self.op, offset, size)
        self.note(f"write {offset:#x} thru {offset + size - 1:#x} ({size:#x} bytes)")
        done = 0
        while done < size:
            done += os.pwrite(self.fd, data[done:], offset + done)
        self._store(offset, data)
        self.counts["write"] += 1

    def _store(self, offset: int, data: bytes) -> None:
        if offset + len(data) > len(self.good):
            self._resize(offset + len(data))
        self.good[offset : offset + len(data)] = data

    def do_read(self) -> None:
        if not self.good:
            self.note("read: the file is empty, skipped")
            return
        offset = self.rng.randrange(len(self.good))
        size = min(self.rng.randrange(1, self.max_op + 1), len(self.good) - offset)
        self.note(f"read {offset:#x} thru {offset + size - 1:#x} ({size:#x} bytes)")
        got = os.pread(self.fd, size, offset)
        self.compare(offset, got, self.good[offset : offset + size], "read")
        self.counts["read"] += 1

    def do_truncate(self) -> None:
        size = self.rng.randrange(self.max_len + 1)
        way = "up" if size > len(self.good) else "down"
        self.note(f"truncate {way} from {len(self.good):#x} to {size:#x}")
        os.ftruncate(self.fd, size)
        self._resize(size)
        self.counts["truncate"] += 1

    def do_fallocate(self) -> None:
        offset, size = self._range()
        keep = self.rng.random() < 0.5
        self.note(f"fallocate {offset:#x} thru {offset + size - 1:#x} keep_size={keep}")
        try:
            fallocate(self.fd, FALLOC_FL_KEEP_SIZE if keep else 0, offset, size)
        except OSError as exc:
            if self._unsupported("fallocate", exc):
                return
            raise
        if not keep and offset + size > len(self.good):
            self._resize(offset + size)
        self.counts["fallocate"] += 1

    def do_punch_hole(self) -> None:
        offset, size = self._range()
        self.note(f"punch_hole {offset:#x} thru {offset + size - 1:#x}")
        try:
            fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, size)
        except OSError as exc:
            if self._unsupported("punch_hole", exc):
                return
            raise
        end = min(offset + size, len(self.good))
        if offset < end:
            self.good[offset:end] = bytes(end - offset)
        self.counts["punch_hole"] += 1

    def do_zero_range(self) -> None:
        offset, size = self._range()
        keep = self.rng.random() < 0.5
        self.note(f"zero_range {offset:#x} thru {offset + size - 1:#x} keep_size={keep}")
        mode = FALLOC_FL_ZERO_RANGE | (FALLOC_FL_KEEP_SIZE if keep else 0)
        try:
            fallocate(self.fd, mode, offset, size)
        except OSError as exc:
            if self._unsupported("zero_range", exc):
                return
            raise
        end = offset + size if not keep else min(offset + size, len(self.good))
        if end > len(self.good):
            self._resize(end)
        if offset < end:
            self.good[offset:end] = bytes(end - offset)
        self.counts["zero_range"] += 1

    def _blocks(self, limit: int) -> tuple[int, int] | None:
        """A block-aligned (offset, length) with offset + length <= limit, or None."""
        blocks = limit // BLOCK
        if blocks < 2:
            return None
        start = self.rng.randrange(blocks - 1)
        count = self.rng.randrange(1, min(blocks - start, self.max_op // BLOCK) + 1)
        return start * BLOCK, count * BLOCK

    def do_collapse_range(self) -> None:
        spot = self._blocks(len(self.good) - 1)  # collapse may not reach the end of the file
        if spot is None:
            self.note("collapse_range: the file is too small, skipped")
            return
        offset, size = spot
        self.note(f"collapse_range {offset:#x} thru {offset + size - 1:#x}")
        try:
            fallocate(self.fd, FALLOC_FL_COLLAPSE_RANGE, offset, size)
        except OSError as exc:
            if self._unsupported("collapse_range", exc):
                return
            raise
        del self.good[offset : offset + size]
        self.counts["collapse_range"] += 1

    def do_insert_range(self) -> None:
        spot = self._blocks(min(len(self.good), self.max_len - self.max_op))
        if spot is None:
            self.note("insert_range: the file is too small, skipped")
            return
        offset, size = spot
        self.note(f"insert_range {offset:#x} thru {offset + size - 1:#x}")
        try:
            fallocate(self.fd, FALLOC_FL_INSERT_RANGE, offset, size)
        except OSError as exc:
            if self._unsupported("insert_range", exc):
                return
            raise
        self.good[offset:offset] = bytes(size)
        self.counts["insert_range"] += 1

    def do_copy_range(self) -> None:
        if not self.good:
            self.note("copy_range: the file is empty, skipped")
            return
        src = self.rng.randrange(len(self.good))
        size = min(self.rng.randrange(1, self.max_op + 1), len(self.good) - src)
        dst = self.rng.randrange(self.max_len - size + 1)
        if src < dst + size and dst < src + size:
            self.note("copy_range: the ranges overlap, skipped")
            return  # (the kernel refuses overlapping ranges of one file: EINVAL)
        self.note(f"copy_range {src:#x} thru {src + size - 1:#x} to {dst:#x} ({size:#x} bytes)")
        done = 0
        try:
            while done < size:
                n = os.copy_file_range(self.fd, self.fd, size - done, src + done, dst + done)
                if n == 0:
                    break
                done += n
        except OSError as exc:
            if done == 0 and self._unsupported("copy_range", exc):
                return
            raise
        if done < size:
            self.note(f"copy_range: copied {done:#x} of {size:#x} bytes")
        self._store(dst, bytes(self.good[src : src + done]))
        self.counts["copy_range"] += 1

    def do_fsync(self) -> None:
        self.note("fsync")
        os.fsync(self.fd)
        self.counts["fsync"] += 1

    def do_mapwrite(self) -> None:
        offset, size = self._range()
        data = pattern(self.op, offset, size)
        self.note(f"mapwrite {offset:#x} thru {offset + size - 1:#x} ({size:#x} bytes)")
        if offset + size > len(self.good):
            os.ftruncate(self.fd, offset + size)  # a mapping cannot grow the file
            self._resize(offset + size)
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        with mmap.mmap(self.fd, offset + size - start, offset=start) as m:
            m[offset - start : offset - start + size] = data
            m.flush()  # msync
        self._store(offset, data)
        self.counts["mapwrite"] += 1

    def do_mapread(self) -> None:
        if not self.good:
            self.note("mapread: the file is empty, skipped")
            return
        offset = self.rng.randrange(len(self.good))
        size = min(self.rng.randrange(1, self.max_op + 1), len(self.good) - offset)
        self.note(f"mapread {offset:#x} thru {offset + size - 1:#x} ({size:#x} bytes)")
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        with mmap.mmap(self.fd, offset + size - start, offset=start, prot=mmap.PROT_READ) as m:
            got = m[offset - start : offset - start + size]
        self.compare(offset, got, self.good[offset : offset + size], "mapread")
        self.counts["mapread"] += 1

    def reopen(self) -> None:
        self.note("close/open")
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_RDWR)
        self.check_all("after close/open")
        self.counts["close/open"] += 1

    # --- checks -------------------------------------------------------------------------------
    def check_size(self, what: str) -> None:
        size = os.fstat(self.fd).st_size
        if size != len(self.good):
            raise Mismatch(f"after {what}: fstat size {size:#x}, expected {len(self.good):#x}")

    def check_all(self, what: str) -> None:
        self.check_size(what)
        got = bytearray()
        while len(got) < len(self.good):
            part = os.pread(self.fd, len(self.good) - len(got), len(got))
            if not part:
                break
            got += part
        self.compare(0, bytes(got), self.good, what)

    def compare(self, offset: int, got: bytes, want: bytes | bytearray, what: str) -> None:
        if got == want:
            return
        raise Mismatch(describe(offset, got, bytes(want), what))


def describe(offset: int, got: bytes, want: bytes, what: str) -> str:
    """Where ``got`` (read at ``offset``) first differs from ``want``, and what is there."""
    if len(got) != len(want) and got == want[: len(got)]:
        return f"{what}: short, {len(got):#x} bytes at {offset:#x}, expected {len(want):#x}"
    at = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b) if got else 0
    end = at
    while end < min(len(got), len(want)) and got[end] != want[end]:
        end += 1
    spot = offset + at
    lines = [
        f"{what}: first difference at offset {spot:#x} ({end - at:#x} bytes differ from there;"
        f" read {len(got):#x} bytes at {offset:#x}, expected {len(want):#x})",
        f"  expected: {want[at : at + 16].hex(' ')}",
        f"  got:      {got[at : at + 16].hex(' ')}",
    ]
    if at < len(got) and got[at]:
        op = (got[at] - spot % 255) % 256
        lines.append(f"  the bad byte is what an operation numbered {op} (mod 256) wrote there")
    return "\n".join(lines)


def compare_host(host_path: str, good: bytes | bytearray) -> str | None:
    with open(host_path, "rb") as f:
        host = f.read()
    if host == good:
        return None
    return describe(0, host, bytes(good), f"the host file {host_path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="the file to exercise (created, truncated)")
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mmap", action="store_true", help="also mapped reads and writes")
    parser.add_argument("--max-len", type=lambda s: int(s, 0), default=256 << 10)
    parser.add_argument("--max-op", type=lambda s: int(s, 0), default=64 << 10)
    parser.add_argument("--reopen-every", type=int, default=100, help="1 in N ops: close/open")
    parser.add_argument("--host-copy", help="after the end: this path must hold the same bytes")
    args = parser.parse_args(argv)
    # A mapped access past the file's end (its size shrank under a mapping) is SIGBUS, which
    # Python cannot catch: at least say where.
    faulthandler.enable()
    fsx = Fsx(args.path, args.seed, args.mmap, args.max_len, args.max_op, args.reopen_every)
    started = time.monotonic()
    try:
        fsx.run(args.ops)
    except (Mismatch, OSError) as exc:
        print(f"fsx: operation {fsx.op} failed: {exc}", file=sys.stderr)
        print(f"fsx: the last {len(fsx.log)} operations (seed {args.seed}):", file=sys.stderr)
        for line in fsx.log:
            print(line, file=sys.stderr)
        return 1
    finally:
        fsx.close()
    took = time.monotonic() - started
    if args.host_copy:
        problem = compare_host(args.host_copy, fsx.good)
        if problem:
            print(f"fsx: after {fsx.op} operations and fsync: {problem}", file=sys.stderr)
            return 1
    skipped = ", ".join(f"{k} ({v})" for k, v in sorted(fsx.skipped.items())) or "none"
    counts = " ".join(f"{k}={v}" for k, v in sorted(fsx.counts.items()))
    print(
        f"fsx: {fsx.op} operations in {took:.1f} s ({fsx.op / took:.0f}/s), seed {args.seed}, "
        f"skipped: {skipped}; {counts}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
