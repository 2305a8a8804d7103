"""The write-behind queue's rules, with a fake sender: order, drains, errors, bounded memory."""

from __future__ import annotations

import errno
import threading
import time

import pytest
from waiting import wait_until

from bridgefs.client import writes
from bridgefs.client.writes import PendingWrite, WriteBehind


class Host:
    """Records what a sender did; a write of data b"slow" waits until ``release`` is set."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running: list[PendingWrite] = []
        self.done: list[tuple[int, int, bytes]] = []  # (node, offset, data) in landing order
        self.overlapped = False
        self.max_parallel = 0
        self.release = threading.Event()
        self.fail: dict[bytes, OSError] = {}
        self.short: set[bytes] = set()

    def write(self, node, offset, data):
        w = PendingWrite(node, 0, offset, data, lambda: 0)

        def send():
            with self.lock:
                if any(
                    r.node == node and r.offset < w.end and offset < r.end for r in self.running
                ):
                    self.overlapped = True
                self.running.append(w)
                self.max_parallel = max(self.max_parallel, len(self.running))
            try:
                if data.startswith(b"slow"):
                    assert self.release.wait(10)
                else:
                    time.sleep(0.002)
                if data in self.fail:
                    raise self.fail[data]
                with self.lock:
                    self.done.append((node, offset, data))
                return len(data) - 1 if data in self.short else len(data)
            finally:
                with self.lock:
                    self.running.remove(w)

        return send


@pytest.fixture
def wb():
    queue = WriteBehind(window=1 << 20, senders=4)
    yield queue
    queue.close()


def _submit(wb, host, fh, node, offset, data):
    wb.submit(PendingWrite(node, fh, offset, data, host.write(node, offset, data)))


def test_overlapping_writes_land_in_the_order_given(wb):
    host = Host()
    host.release.set()
    for i in range(60):
        # each write overlaps the previous one on node 1; node 2's never overlap
        _submit(wb, host, 10, 1, i * 5, bytes([i]) * 10)
        _submit(wb, host, 20, 2, i * 10, bytes([i]) * 10)
    wb.drain()
    assert not host.overlapped
    node1 = [(off, data) for node, off, data in host.done if node == 1]
    assert node1 == [(i * 5, bytes([i]) * 10) for i in range(60)]
    assert host.max_parallel > 1  # the other node's writes went alongside


def test_a_write_waits_for_an_earlier_queued_overlapping_one(wb):
    host = Host()
    _submit(wb, host, 10, 1, 0, b"slow" + b"0" * 96)  # in flight: 0..100
    _submit(wb, host, 10, 1, 100, b"1" * 100)  # 100..200: free to go
    _submit(wb, host, 10, 1, 50, b"2" * 100)  # 50..150: waits for the first two
    _submit(wb, host, 10, 1, 140, b"3" * 5)  # overlaps no write in flight, but the queued one
    wait_until(lambda: host.done, what="the free write lands")
    with host.lock:  # the slow one still in flight, the two behind it not sent at all
        assert [d[:1] for _, _, d in host.done] == [b"1"]
        assert [w.data[:1] for w in host.running] == [b"s"]
    host.release.set()
    wb.drain()
    assert [d[:1] for _, _, d in host.done] == [b"1", b"s", b"2", b"3"]


def test_drain_waits_for_every_write_queued_before_it(wb):
    host = Host()
    _submit(wb, host, 10, 1, 0, b"slow")
    assert wb.busy
    drained = threading.Event()
    t = threading.Thread(target=lambda: (wb.drain(), drained.set()))
    t.start()
    assert not drained.wait(0.2)
    host.release.set()
    assert drained.wait(5)
    t.join()
    assert host.done == [(1, 0, b"slow")] and not wb.busy


def test_an_error_is_reported_once_to_its_file_and_by_its_next_write(wb):
    host = Host()
    host.release.set()
    host.fail[b"bad"] = OSError(errno.ENOSPC, "full")
    _submit(wb, host, 10, 1, 0, b"bad")
    _submit(wb, host, 20, 2, 0, b"fine")
    wb.drain()
    assert wb.take_error(2, 20, any_file=True) is None
    with pytest.raises(OSError) as info:
        _submit(wb, host, 10, 1, 3, b"next")  # not made: the file's error comes first
    assert info.value.errno == errno.ENOSPC
    assert wb.take_error(1, 10, any_file=False) is None  # reported once to writes and close
    _submit(wb, host, 10, 1, 3, b"again")
    wb.drain()
    assert (1, 3, b"again") in host.done and (1, 3, b"next") not in host.done


def test_a_write_that_reported_the_error_leaves_it_owed_to_fsync(wb):
    # A program that stops at the failed write and fsyncs must not be told all is safe: the
    # write that failed was the echo of an earlier one it had been told had succeeded.
    host = Host()
    host.release.set()
    host.fail[b"bad"] = OSError(errno.ENOSPC, "full")
    _submit(wb, host, 10, 1, 0, b"bad")
    wb.drain()
    with pytest.raises(OSError):
        _submit(wb, host, 10, 1, 3, b"next")
    assert wb.take_error(1, 10, any_file=True) == errno.ENOSPC
    assert wb.take_error(1, 10, any_file=True) is None  # once per open file
    assert wb.take_error(1, 10, any_file=False) is None


def test_a_new_failure_is_owed_to_every_fsync_again(wb):
    host = Host()
    host.release.set()
    host.fail[b"bad"] = OSError(errno.EIO, "lost")
    host.fail[b"worse"] = OSError(errno.EIO, "lost")
    _submit(wb, host, 10, 1, 0, b"bad")
    wb.drain()
    assert wb.take_error(1, 20, any_file=True) == errno.EIO  # seen by another file's fsync
    _submit(wb, host, 30, 1, 8, b"worse")  # through another open file
    wb.drain()
    assert wb.take_error(1, 20, any_file=True) == errno.EIO
    assert wb.take_error(1, 10, any_file=True) == errno.EIO
    assert wb.take_error(1, 30, any_file=True) == errno.EIO
    assert wb.take_error(1, 20, any_file=True) is None
    assert wb.take_error(1, 10, any_file=False) is None  # its fsync told it


def test_errors_never_reported_are_bounded(wb, monkeypatch):
    monkeypatch.setattr(writes, "MAX_ERRORS", 2)
    host = Host()
    host.release.set()
    host.fail[b"bad"] = OSError(errno.EIO, "lost")
    for node in (1, 2, 3):
        _submit(wb, host, 10, node, 0, b"bad")
        wb.drain()
    assert wb.take_error(1, 10, any_file=True) is None  # the oldest was dropped
    assert wb.take_error(3, 10, any_file=True) == errno.EIO


def test_fsync_through_any_open_file_reports_it_a_close_only_through_the_writer(wb):
    host = Host()
    host.release.set()
    host.fail[b"bad"] = OSError(errno.EIO, "lost")
    _submit(wb, host, 10, 1, 0, b"bad")  # written through open file 10
    wb.drain()
    assert wb.take_error(1, 30, any_file=False) is None  # a reader's close: not its write
    assert wb.take_error(1, 20, any_file=True) == errno.EIO  # fsync through another descriptor
    assert wb.take_error(1, 20, any_file=True) is None
    assert wb.take_error(1, 10, any_file=False) == errno.EIO  # the writer's close still hears it
    assert wb.take_error(1, 10, any_file=True) == errno.EIO  # and the writer's fsync
    assert wb.take_error(1, 10, any_file=True) is None
    assert wb.take_error(1, 40, any_file=True) is None  # seen by fsync: a later open is not told


def test_a_short_write_is_an_error(wb):
    host = Host()
    host.release.set()
    host.short.add(b"short")
    _submit(wb, host, 10, 1, 0, b"short")
    wb.drain()
    assert wb.take_error(1, 10, any_file=False) == errno.EIO


def test_the_window_bounds_what_is_queued(wb):
    host = Host()
    _submit(wb, host, 10, 1, 0, b"slow" + bytes((1 << 20) - 4))  # fills the window
    queued = threading.Event()
    t = threading.Thread(target=lambda: (_submit(wb, host, 10, 1, 1 << 20, b"x"), queued.set()))
    t.start()
    assert not queued.wait(0.2)  # no room until the first is answered
    host.release.set()
    assert queued.wait(5)
    t.join()
    wb.drain()
    assert len(host.done) == 2


def test_close_sends_what_is_queued_first():
    host = Host()
    host.release.set()
    wb = WriteBehind(senders=1)
    for i in range(10):
        _submit(wb, host, 10, 1, i, b"z")
    wb.close()
    assert len(host.done) == 10
    with pytest.raises(OSError):
        _submit(wb, host, 10, 1, 0, b"late")
