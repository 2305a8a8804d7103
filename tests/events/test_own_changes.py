"""Changes made through the mount are never sent back to it, however far the host's watcher falls
behind: thousands of creations and deletions on a machine whose every core is busy still give a
watcher in the VM one event per change, and the client replays none of them."""

import collections
import os
import subprocess
import sys
import time

import pytest
from eventkit import wait_settled

FILES = 3000
WRITERS = 4
WRITER = f"""
import sys
d, w = sys.argv[1], int(sys.argv[2])
for i in range(w, {FILES}, {WRITERS}):
    with open(f"{{d}}/f{{i:05d}}.txt", "wb") as f:
        f.write(b"x" * 1024)
"""


@pytest.fixture
def busy_cores():
    """One lowest-priority busy loop per core for the length of the test, each stopped by its
    pid: the server's watcher then falls seconds behind the changes it reports."""
    hogs = [subprocess.Popen(["nice", "-n", "19", "sh", "-c", "while :; do :; done"])
            for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(10)


def test_own_changes_are_heard_once_under_load(watched_share, inotify, busy_cores):
    host, mnt = watched_share
    (mnt / "d").mkdir()
    inotify.expect("CREATE", "d")
    time.sleep(0.5)  # inotifywait -r puts its watch on the new directory
    # Several writers at once, as an unpack or a parallel build does: the server then makes
    # changes faster than its watcher reports them.
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(mnt / "d"), str(w)])
               for w in range(WRITERS)]
    for writer in writers:
        assert writer.wait(300) == 0
    subprocess.run(["rm", "-rf", str(mnt / "d")], check=True)
    assert not (host / "d").exists()

    settled = wait_settled(mnt, quiet=3, timeout=300)
    events = inotify.drain(1.0)
    creates = collections.Counter(p for flags, p in events if "CREATE" in flags)
    deletes = collections.Counter(p for flags, p in events if "DELETE" in flags)
    names = {f"d/f{i:05d}.txt" for i in range(FILES)}
    assert {p: n for p, n in creates.items() if n != 1} == {}, settled
    assert {p: n for p, n in deletes.items() if n != 1} == {}, settled
    assert set(creates) == names and set(deletes) == names | {"d"}
    assert settled["replayed"] == 0 and settled["received"] == 0, settled
    assert settled["events"] == "flowing"
