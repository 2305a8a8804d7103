"""Several threads using the filesystem at once."""

from __future__ import annotations

import collections
import concurrent.futures
import os
import random
import threading

THREADS = 8


def _run(n, fn):
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(fn, range(n)))


def test_threads_write_and_read_own_files(root):
    size = 1024 * 1024
    barrier = threading.Barrier(THREADS)

    def work(i):
        data = random.Random(i).randbytes(size)
        p = root / f"thread-{i}"
        barrier.wait(timeout=60)
        fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                # odd chunk size so writes from threads interleave unaligned
                n = os.write(fd, view[:65_521])
                view = view[n:]
        finally:
            os.close(fd)
        fd = os.open(p, os.O_RDONLY)
        try:
            parts = []
            while chunk := os.read(fd, 100_003):
                parts.append(chunk)
        finally:
            os.close(fd)
        return b"".join(parts) == data, os.stat(p).st_size

    results = _run(THREADS, work)
    assert results == [(True, size)] * THREADS
    assert sorted(os.listdir(root)) == sorted(f"thread-{i}" for i in range(THREADS))
    # read everything again after all writers finished
    for i in range(THREADS):
        assert (root / f"thread-{i}").read_bytes() == random.Random(i).randbytes(size)


def test_threads_pwrite_disjoint_regions_of_one_file(root):
    region = 128 * 1024
    p = root / "shared"
    p.write_bytes(b"")
    barrier = threading.Barrier(THREADS)

    def work(i):
        data = bytes([65 + i]) * region
        fd = os.open(p, os.O_WRONLY)
        try:
            barrier.wait(timeout=60)
            for off in range(0, region, 8192):
                os.pwrite(fd, data[off : off + 8192], i * region + off)
        finally:
            os.close(fd)

    _run(THREADS, work)
    got = p.read_bytes()
    assert len(got) == THREADS * region
    for i in range(THREADS):
        assert got[i * region : (i + 1) * region] == bytes([65 + i]) * region


def test_threads_o_append_records_do_not_overlap(root):
    p = root / "log"
    p.write_bytes(b"")
    per_thread = 50
    rec_len = 100
    barrier = threading.Barrier(THREADS)

    def work(i):
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        try:
            barrier.wait(timeout=60)
            for j in range(per_thread):
                rec = f"t{i}-r{j:03d}-".encode().ljust(rec_len - 1, b"#") + b"\n"
                assert os.write(fd, rec) == rec_len
        finally:
            os.close(fd)

    _run(THREADS, work)
    got = p.read_bytes()
    assert len(got) == THREADS * per_thread * rec_len
    records = [got[k : k + rec_len] for k in range(0, len(got), rec_len)]
    assert all(r.endswith(b"\n") and r.count(b"\n") == 1 for r in records)
    ids = collections.Counter(r.split(b"#")[0] for r in records)
    assert len(ids) == THREADS * per_thread
    assert set(ids.values()) == {1}


def test_threads_create_and_delete_in_one_directory(root):
    d = root / "d"
    d.mkdir()
    per_thread = 100
    barrier = threading.Barrier(THREADS)

    def work(i):
        barrier.wait(timeout=60)
        for j in range(per_thread):
            (d / f"t{i}-{j}").write_bytes(f"{i}/{j}".encode())
        for j in range(0, per_thread, 2):
            os.unlink(d / f"t{i}-{j}")

    _run(THREADS, work)
    names = os.listdir(d)
    assert len(names) == len(set(names))
    expected = {f"t{i}-{j}" for i in range(THREADS) for j in range(1, per_thread, 2)}
    assert set(names) == expected
    for n in expected:
        i, j = n[1:].split("-")
        assert (d / n).read_bytes() == f"{i}/{j}".encode()
