"""A host thread keeps swapping a directory in the share for a symlink to a directory outside it,
while a client creates, writes and reads files in it: nothing outside may change."""

import errno
import os
import threading
import time

import pytest
from waiting import wait_until

from bridgefs.client import RemoteFileSystem
from bridgefs.fuse.filesystem import Context, FsError, SetAttr
from bridgefs.server.syscalls import RENAME_EXCHANGE, renameat2
from serverkit import Inotify, snapshot

SECONDS = 2.0
EXPECTED = {
    errno.ENOTDIR,
    errno.ENOENT,
    errno.ELOOP,
    errno.EEXIST,
    errno.ESTALE,
    errno.ENOTEMPTY,
    errno.EISDIR,
}


def _swapper(share, stop: threading.Event, swaps: list):
    fd = os.open(share, os.O_PATH | os.O_DIRECTORY)
    try:
        while not stop.is_set():
            renameat2(fd, b"work", fd, b"swap", RENAME_EXCHANGE)
            swaps.append(1)
    finally:
        os.close(fd)


def _client_loop(fs: RemoteFileSystem, worker: int, stop: threading.Event, stats: dict):
    ctx = Context()
    i = 0
    held = None  # a handle kept across swaps, to use after the name has changed meaning
    while not stop.is_set():
        i += 1
        name = b"w%d-%d" % (worker, i)
        try:
            work = fs.lookup(ctx, 1, b"work")
            if held is None:
                held = work.ino
            for parent in (work.ino, held):
                entry, opened = fs.create(ctx, parent, name, 0o644, 0, os.O_RDWR | os.O_TRUNC)
                payload = b"written through bridgefs %d\n" % i
                assert fs.write(ctx, entry.ino, opened.fh, 0, payload, 0) == len(payload)
                assert fs.read(ctx, entry.ino, opened.fh, 0, 100) == payload
                fs.setattr(ctx, entry.ino, SetAttr(size=len(payload), mode=0o600), opened.fh)
                fs.release(ctx, entry.ino, opened.fh, 0)
                fs.mkdir(ctx, parent, name + b".d", 0o755, 0)
                fs.symlink(ctx, parent, name + b".l", b"/etc/passwd")
                fs.rename(ctx, parent, name, parent, name + b".r", 0)
                victim = fs.lookup(ctx, parent, b"victim")
                opened = fs.open(ctx, victim.ino, os.O_RDWR | os.O_APPEND)
                fs.write(ctx, victim.ino, opened.fh, 0, b"+", 0)
                fs.release(ctx, victim.ino, opened.fh, 0)
                stats["ok"] += 1
        except FsError as exc:
            assert exc.errno in EXPECTED, exc
            stats["refused"] += 1


@pytest.mark.timeout(300)
def test_swapping_a_directory_for_a_symlink_never_escapes(tree, start_server):
    share, outside = tree
    (share / "work").mkdir()
    (share / "work" / "victim").write_bytes(b"inside victim\n")
    target = outside / "target"
    target.mkdir()
    (target / "victim").write_bytes(b"outside victim\n")
    os.symlink(target, share / "swap")
    before = snapshot(outside)
    watch = Inotify(outside, target)
    server = start_server({"s": (str(share), False)})

    stop = threading.Event()
    swaps: list = []
    stats = {"ok": 0, "refused": 0}
    fss = [RemoteFileSystem(server.addresses[0], "s") for _ in range(2)]
    threads = [threading.Thread(target=_swapper, args=(share, stop, swaps))]
    errors = []

    def run(fs, worker):
        try:
            _client_loop(fs, worker, stop, stats)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads += [threading.Thread(target=run, args=(fs, n)) for n, fs in enumerate(fss)]
    for t in threads:
        t.start()
    # At least SECONDS of racing, and on until enough of each outcome happened: a loaded
    # machine takes longer to get there, never fails for it.
    try:
        time.sleep(SECONDS)
        wait_until(
            lambda: errors or (len(swaps) > 100 and stats["ok"] > 10 and stats["refused"] > 10),
            timeout=240,
            what="enough swaps, successes and refusals",
        )
    finally:
        stop.set()
    for t in threads:
        t.join(30)
    for fs in fss:
        fs.close()

    assert not errors, errors
    assert len(swaps) > 100 and stats["ok"] > 10 and stats["refused"] > 10, (len(swaps), stats)
    events = watch.events()
    watch.close()
    assert events == [], events[:10]
    assert snapshot(outside) == before
    assert (target / "victim").read_bytes() == b"outside victim\n"
    # And the work did land inside the share (under whichever name the directory ended up).
    real = share / ("swap" if (share / "work").is_symlink() else "work")
    assert (real / "victim").read_bytes().startswith(b"inside victim\n+")
