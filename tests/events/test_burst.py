"""A burst of host-side changes: every one reaches the watcher (or the overflow signal does),
memory stays bounded, and the mount keeps answering meanwhile."""

import os
import threading
import time

from eventkit import status, wait_settled


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_burst_of_5000_host_changes(watched_mount, inotify):
    host, mnt, client = watched_mount
    (host / "burst").mkdir()
    inotify.expect("CREATE", "burst")
    inotify.watching(mnt / "burst")
    rss_before = _rss_kib(client.pid)
    assert rss_before > 0

    answered = []
    stop = threading.Event()

    def keep_asking():
        while not stop.is_set():
            os.stat(mnt)
            os.listdir(mnt)
            answered.append(True)
            time.sleep(0.05)  # pacing only: the mount answers other requests meanwhile

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        for i in range(5000):
            (host / "burst" / f"f{i:04}").write_bytes(b"")
    finally:
        wait_settled(host, mnt)
        stop.set()
        asker.join(30)
    # Every change the client replayed is in inotifywait's queue before this one.
    (mnt / "end").mkdir()

    names = set()
    overflow = False
    for flags, path in inotify.until("CREATE", "end"):
        if "Q_OVERFLOW" in flags:
            overflow = True
        if "CREATE" in flags and path.startswith("burst/"):
            names.add(path)
    assert overflow or len(names) == 5000, (len(names), status(mnt))
    assert len(answered) > 0  # the mount answered other requests during the burst
    assert sorted(os.listdir(mnt / "burst")) == [f"f{i:04}" for i in range(5000)]
    # Bounded memory: 256 MiB more for 5,000 changes would mean something keeps every one.
    grown = _rss_kib(client.pid) - rss_before
    assert grown < 256 * 1024, (rss_before, grown)
