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


def test_burst_of_5000_host_changes(watched_share, inotify):
    host, mnt = watched_share
    (host / "burst").mkdir()
    inotify.expect("CREATE", "burst")
    time.sleep(0.3)
    client_pid = int(open(os.path.join(os.path.dirname(mnt), "client.pid")).read()) \
        if os.path.exists(os.path.join(os.path.dirname(mnt), "client.pid")) else None

    answered = []
    stop = threading.Event()

    def keep_asking():
        while not stop.is_set():
            started = time.monotonic()
            os.stat(mnt)
            os.listdir(mnt)
            answered.append(time.monotonic() - started)
            time.sleep(0.05)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        for i in range(5000):
            (host / "burst" / f"f{i:04}").write_bytes(b"")
    finally:
        wait_settled(mnt, quiet=2, timeout=300)
        stop.set()
        asker.join(30)

    names = set()
    overflow = False
    for flags, path in inotify.drain(1.0):
        if "Q_OVERFLOW" in flags:
            overflow = True
        if "CREATE" in flags and path.startswith("burst/"):
            names.add(path)
    assert overflow or len(names) == 5000, (len(names), status(mnt))
    assert len(answered) > 0  # the mount answered other requests during the burst
    assert sorted(os.listdir(mnt / "burst")) == [f"f{i:04}" for i in range(5000)]
    if client_pid:
        assert _rss_kib(client_pid) < 1024 * 1024
