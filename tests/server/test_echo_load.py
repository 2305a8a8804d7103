"""Echo suppression under load, decided by state: a session writing, creating and renaming files
from several threads at once, for thousands of changes, on a machine whose every core is busy,
hears none of them back; a second session watching the same share hears every one.

Markers, not quiet periods, say when every change is in: the server reports changes in order,
so once a host change made after the last call has come, every earlier change has too."""

from __future__ import annotations

import os
import threading

import pytest
from test_watch import show, watch  # noqa: F401  (watch: a fixture)

from bridgefs.rpc import pb

C = pb.Change
THREADS = 4
FILES = 150  # per thread: each file created, written, renamed; one hot file written by all
HOT_WRITES = 3  # writes to the hot file per file made
PATIENCE = 600.0  # only how long a failure takes


def _work(client, t: int, hot, errors: list) -> None:
    try:
        for i in range(FILES):
            name = b"t%d_%03d" % (t, i)
            made = client.Create(parent=1, name=name, mode=0o644, flags=os.O_WRONLY)
            assert made.errno == 0, made
            f, fh = made.entry.handle, made.fh
            assert client.Write(handle=f, fh=fh, offset=0, data=b"x" * 512).written == 512
            assert client.Release(handle=f, fh=fh).errno == 0
            if i % 3 == 0:
                assert client.SetAttr(handle=f, mode=0o600).errno == 0
            assert client.Rename(parent=1, name=name, new_parent=1, new_name=b"r" + name).errno == 0
            for k in range(HOT_WRITES):  # one file changed over and over, by every thread
                data = b"%d.%d.%d " % (t, i, k)
                offset = ((i * HOT_WRITES + k) * THREADS + t) * 16
                hot_reply = client.Write(
                    handle=hot.entry.handle, fh=hot.fh, offset=offset, data=data
                )
                assert hot_reply.written == len(data)
    except BaseException as exc:  # reported by the test
        errors.append(exc)


@pytest.mark.timeout(PATIENCE + 120)
def test_own_changes_under_load_never_come_back(tree, raw, watch, busy_cores):  # noqa: F811
    share, _ = tree
    a, b = raw(), raw()
    stream_a, stream_b = watch(a), watch(b)
    errors: list = []
    hot = a.Create(parent=1, name=b"hot", mode=0o644, flags=os.O_RDWR)
    assert hot.errno == 0, hot
    workers = [threading.Thread(target=_work, args=(a, t, hot, errors)) for t in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(PATIENCE)
    assert not errors, errors
    assert a.Release(handle=hot.entry.handle, fh=hot.fh).errno == 0
    (share / "marker").write_bytes(b"")  # after every change of a's: once it came, all did
    seen_a = [show(c) for c in stream_a.wait_for(C.CREATED, "marker", timeout=PATIENCE)]
    seen_b = [show(c) for c in stream_b.wait_for(C.CREATED, "marker", timeout=PATIENCE)]
    assert seen_a == [("CREATED", "marker", "", False)], seen_a[:50]
    assert ("OVERFLOW", "", "", False) not in seen_b
    got = set(seen_b)
    missing = []
    assert ("CREATED", "hot", "", False) in got and ("MODIFIED", "hot", "", False) in got
    for t in range(THREADS):
        for i in range(FILES):
            name = f"t{t}_{i:03d}"
            for want in [("CREATED", name, "", False), ("MOVED", name, "r" + name, False)]:
                if want not in got:
                    missing.append(want)
    assert not missing, (len(missing), missing[:20])
