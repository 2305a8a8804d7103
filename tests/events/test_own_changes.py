"""Changes made through the mount are never sent back to it, however far the host's watcher falls
behind: thousands of creations and deletions on a machine whose every core is busy still give a
watcher in the VM one event per change, and the client replays none of them."""

import collections
import json
import os
import subprocess
import sys
import threading

from eventkit import SETTLE_CHANGES, not_settling, wait_settled

FILES = 3000
WRITERS = 4
WRITER = f"""
import sys
d, w = sys.argv[1], int(sys.argv[2])
for i in range(w, {FILES}, {WRITERS}):
    with open(f"{{d}}/f{{i:05d}}.txt", "wb") as f:
        f.write(b"x" * 1024)
"""


def test_own_changes_are_heard_once_under_load(watched_share, inotify, busy_cores):
    host, mnt = watched_share
    (mnt / "d").mkdir()
    inotify.expect("CREATE", "d")
    inotify.watching(mnt / "d")
    # Several writers at once, as an unpack or a parallel build does: the server then makes
    # changes faster than its watcher reports them.
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(mnt / "d"), str(w)])
        for w in range(WRITERS)
    ]
    for writer in writers:
        assert writer.wait(300) == 0
    subprocess.run(["rm", "-rf", str(mnt / "d")], check=True)
    assert not (host / "d").exists()

    # Any echo the server sent comes, and is replayed, before the marker of this wait.
    settled = wait_settled(host, mnt)
    counts = {k: settled.get(k) for k in ("received", "replayed", "not_replayed", "overflows")}
    (mnt / "end").mkdir()  # every replay is in inotifywait's queue before this event
    events = [
        (flags, p) for flags, p in inotify.until("CREATE", "end") if p != "end" and not_settling(p)
    ]
    creates = collections.Counter(p for flags, p in events if "CREATE" in flags)
    deletes = collections.Counter(p for flags, p in events if "DELETE" in flags)
    names = {f"d/f{i:05d}.txt" for i in range(FILES)}
    assert {p: n for p, n in creates.items() if n != 1} == {}, counts
    assert {p: n for p, n in deletes.items() if n != 1} == {}, counts
    assert set(creates) == names and set(deletes) == names | {"d"}
    assert counts["received"] == SETTLE_CHANGES, counts  # the marker's: none of its own
    assert settled["events"] == "flowing"


def _stats(mnt, *extra) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bridgefs", "stats", str(mnt), "--json", *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_a_new_file_costs_its_create_and_its_write(watched_share):
    """While changes stream in, what the kernel asks around a new file is answered here: the
    directory's attributes after each create or unlink come with the reply, a new file has no
    security.capability, and a created file is closed on the server at once (no Release)."""
    host, mnt = watched_share
    (mnt / "d").mkdir()
    _stats(mnt, "--reset")
    n = 200
    for i in range(n):
        with open(mnt / "d" / f"f{i:03d}", "wb") as f:
            f.write(b"x" * 1024)
    subprocess.run(["rm", "-rf", str(mnt / "d")], check=True)
    rpc = {name: v["count"] for name, v in _stats(mnt)["rpc"].items()}
    assert rpc.get("Create") == n and rpc.get("Write") == n and rpc.get("Unlink") == n, rpc
    assert rpc.get("GetXattr", 0) == 0, rpc
    assert rpc.get("GetAttr", 0) <= 2, rpc
    assert "Release" not in rpc and "Lookup" not in rpc, rpc
    assert not (host / "d").exists()


def test_a_directory_changed_by_many_at_once_shows_its_final_attributes(watched_share):
    host, mnt = watched_share
    (mnt / "d").mkdir()

    def make(k):
        for i in range(k, 60, 6):
            (mnt / "d" / f"sub{i:02d}").mkdir()
            (mnt / "d" / f"file{i:02d}").write_bytes(b"")

    threads = [threading.Thread(target=make, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got, want = os.stat(mnt / "d"), os.stat(host / "d")
    assert (got.st_nlink, got.st_size, got.st_mtime_ns, got.st_ctime_ns) == (
        want.st_nlink,
        want.st_size,
        want.st_mtime_ns,
        want.st_ctime_ns,
    )
