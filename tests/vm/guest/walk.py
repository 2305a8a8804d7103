"""A walk of a tree (lstat of every entry) and a sequential read of one file, timed in the guest."""

import json
import os
import sys
import time


def walk(top):
    start = time.perf_counter()
    count = 0
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            os.lstat(os.path.join(root, name))
            count += 1
    return count, time.perf_counter() - start


def read(path):
    start = time.perf_counter()
    total = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            total += len(chunk)
    return total, time.perf_counter() - start


if __name__ == "__main__":
    what, path = sys.argv[1], sys.argv[2]
    n, secs = walk(path) if what == "walk" else read(path)
    print(json.dumps({"n": n, "secs": secs}))
