"""With long-lived caches on, host-side changes are still never served stale."""

import os
import time

import pytest

from eventkit import status, wait_settled


def _eventually(check, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def test_rewrite_in_place_same_size_same_inode_is_read_new(watched_share):
    host, mnt = watched_share
    f = host / "config.json"
    f.write_bytes(b"AAAAAAAAAA")
    assert _eventually(lambda: (mnt / "config.json").exists())
    assert (mnt / "config.json").read_bytes() == b"AAAAAAAAAA"
    ino = os.stat(f).st_ino
    with open(f, "r+b") as fh:  # same inode, same size, new bytes
        fh.write(b"BBBBBBBBBB")
    assert os.stat(f).st_ino == ino
    assert _eventually(lambda: (mnt / "config.json").read_bytes() == b"BBBBBBBBBB")


def test_host_side_new_and_deleted_names_show_despite_long_caches(watched_share):
    host, mnt = watched_share
    assert not (mnt / "later.txt").exists()  # a negative entry, cached long
    (host / "later.txt").write_text("here")
    assert _eventually(lambda: (mnt / "later.txt").exists())
    assert "later.txt" in os.listdir(mnt)
    (host / "later.txt").unlink()
    assert _eventually(lambda: not (mnt / "later.txt").exists())
    assert "later.txt" not in os.listdir(mnt)


def _round_trips(mnt, reset=False):
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "bridgefs", "stats", str(mnt), "--json"]
        + (["--reset"] if reset else []),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.timeout(600)  # 10,000 host-side creations stream in and are replayed first
def test_second_walk_and_second_read_cost_no_round_trip(watched_share):
    host, mnt = watched_share
    for d in range(100):
        sub = host / f"pkg{d:03}" / "src"
        sub.mkdir(parents=True)
        for i in range(100):
            (sub / f"mod{i:03}.js").write_text(f"export const v = {d * 100 + i};\n")
    wait_settled(host, mnt)  # the creations above stream in as changes: let them all apply
    walk = ["find", str(mnt), "-printf", "%s %m\n"]
    import subprocess

    def read_all():
        for root, _dirs, files in os.walk(mnt):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    f.read()

    first = subprocess.run(walk, capture_output=True, text=True, check=True).stdout
    assert first.count("\n") == 10_000 + 200 + 1
    read_all()
    _round_trips(mnt, reset=True)
    assert subprocess.run(walk, capture_output=True, text=True, check=True).stdout == first
    # No name, attribute or open costs a round trip.  A listing or a file's pages are fetched
    # again only where the kernel itself let go of them meanwhile: this VM's host reclaims page
    # cache now and then, whatever the free memory, so a few may be.  Free space (one StatFs a
    # walk) raises no event and is never trusted for long.
    walk = _round_trips(mnt, reset=True)
    walk_rpc = walk["rpc"]
    assert set(walk_rpc) <= {"ListDir", "StatFs"}, (walk_rpc, status(mnt))
    assert walk_rpc.get("StatFs", {"count": 0})["count"] <= 1, walk_rpc
    assert walk_rpc.get("ListDir", {"count": 0})["count"] <= 10, walk_rpc
    read_all()
    read = _round_trips(mnt)
    rpc = read["rpc"]
    assert set(rpc) <= {"Read", "ListDir", "StatFs"}, rpc
    assert rpc.get("StatFs", {"count": 0})["count"] <= 1, rpc
    assert rpc.get("Read", {"count": 0})["count"] <= 100, rpc
    # The kernel opens nothing here while changes stream in (no-open mode): 10,000 opens and
    # closes of files and 200 of directories reach the client as no request at all.
    for fuse in (walk["fuse"], read["fuse"]):
        assert not set(fuse) & {"OPEN", "FLUSH", "RELEASE", "OPENDIR", "RELEASEDIR"}, fuse
