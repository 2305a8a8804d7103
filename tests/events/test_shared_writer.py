"""One file written by the VM and by the host at once.

The VM's writer runs in its own process and reports every block it was acknowledged and every
size its own fstat showed; the host writes other blocks of the same file meanwhile, a few blocks
behind the VM, so that host changes keep arriving (and are replayed) while the VM's latest
blocks are still on their way to the host (with the writeback cache: dirty pages).  A
writer's own size never goes backwards, and once the VM's writes are fsync'd and closed every
block it was acknowledged is on the host where the host did not write."""

import json
import os
import queue
import subprocess
import sys
import threading
import zlib

import pytest
from waiting import PATIENCE, wait_until

from eventkit import wait_for_events, wait_settled
from mounting import bridgefs_server, remote_mount

BLOCK = 4096
VM_BLOCKS = int(os.environ.get("SHARED_BLOCKS", "2048"))  # the file grows to 16 MiB
# The host writes its block i once the VM was acknowledged block i + LAG // 2; the VM writes its
# block i once the host wrote block i - LAG (a line on its stdin says so): the two stay close.
LAG = 16

# The VM's writer: argv: path, "even" (blocks 0, 2, 4... of the file) or "append" (records
# appended with O_APPEND), count, lag.  Before block i (from lag on) it reads a line from stdin.
# Prints one line per acknowledged block: "OFFSET SIZE", the
# size its fstat showed right after; "done" once fsync and close succeeded.
VM_WRITER = r"""
import os, sys, zlib
path, how, count, lag = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
BLOCK = 4096

def record(i):
    head = b"vm %08d " % i
    body = (head * (BLOCK // len(head) + 1))[: BLOCK - 8]
    return body + b"%08x" % zlib.crc32(body)

flags = os.O_WRONLY | (os.O_APPEND if how == "append" else 0)
fd = os.open(path, flags)
out = sys.stdout
for i in range(count):
    if i >= lag:
        sys.stdin.readline()
    data = record(i)
    if how == "append":
        assert os.write(fd, data) == BLOCK
        offset = os.lseek(fd, 0, os.SEEK_CUR) - BLOCK
    else:
        offset = 2 * i * BLOCK
        assert os.pwrite(fd, data, offset) == BLOCK
    out.write(f"{offset} {os.fstat(fd).st_size}\n")
    out.flush()
os.fsync(fd)
os.close(fd)
out.write("done\n")
out.flush()
"""


def host_record(i: int) -> bytes:
    head = b"host %08d " % i
    body = (head * (BLOCK // len(head) + 1))[: BLOCK - 8]
    return body + b"%08x" % zlib.crc32(body)


def vm_record(i: int) -> bytes:
    head = b"vm %08d " % i
    body = (head * (BLOCK // len(head) + 1))[: BLOCK - 8]
    return body + b"%08x" % zlib.crc32(body)


@pytest.fixture(params=["default", "writeback"])
def shared_mount(request, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    mnt = tmp_path / "mnt"
    extra = ["--writeback-cache"] if request.param == "writeback" else []
    with bridgefs_server({"share": str(host)}, f"unix:{tmp_path / 'server.sock'}") as (address, _):
        with remote_mount(address, "share", mnt, *extra):
            wait_for_events(mnt)
            yield host, mnt


class VmWriter:
    """The VM's writer process; ``acked`` fills with (offset, size seen) as it reports them."""

    def __init__(self, path, how: str, count: int, lag: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", VM_WRITER, str(path), how, str(count), str(lag)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.acked: list[tuple[int, int]] = []
        self.done = False
        self.progress: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.strip() == "done":
                self.done = True
            else:
                offset, size = line.split()
                self.acked.append((int(offset), int(size)))
            self.progress.put(len(self.acked))
        self.progress.put(None)

    def wait_for(self, count: int) -> bool:
        """Wait until the writer has reported ``count`` blocks; False once it ended short."""
        while len(self.acked) < count:
            if self.progress.get(timeout=PATIENCE) is None:
                return len(self.acked) >= count
        return True

    def go_on(self, blocks: int = 1) -> None:
        """Let the writer write ``blocks`` more (the host wrote as many)."""
        try:
            self.proc.stdin.write("\n" * blocks)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it ended (finish says how)

    def finish(self) -> None:
        self.go_on(VM_BLOCKS)
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            assert self.proc.wait(PATIENCE * 5) == 0, "the VM's writer failed"
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(PATIENCE)
        assert self.done, "the VM's writer did not report its fsync and close"


def assert_monotonic(acked: list[tuple[int, int]]) -> None:
    sizes = [size for _, size in acked]
    drops = [(i, sizes[i - 1], sizes[i]) for i in range(1, len(sizes)) if sizes[i] < sizes[i - 1]]
    assert not drops, f"{len(drops)} times the writer's size went backwards, first: {drops[:5]}"


def test_vm_and_host_write_alternate_blocks(shared_mount):
    """The VM writes the even blocks, the host the odd ones, both in order from an empty file:
    the file grows from both sides at once."""
    host, mnt = shared_mount
    (host / "shared").write_bytes(b"")
    wait_until(lambda: (mnt / "shared").exists(), what="the file shows in the mount")
    vm = VmWriter(mnt / "shared", "even", VM_BLOCKS, LAG)
    fd = os.open(host / "shared", os.O_WRONLY)
    try:
        for i in range(VM_BLOCKS):
            if not vm.wait_for(min(VM_BLOCKS, i + LAG // 2)):
                break
            os.pwrite(fd, host_record(i), (2 * i + 1) * BLOCK)
            vm.go_on()
    finally:
        os.close(fd)
    vm.finish()
    assert_monotonic(vm.acked)
    assert len(vm.acked) == VM_BLOCKS
    wait_settled(host, mnt)
    data = (host / "shared").read_bytes()
    assert len(data) == 2 * VM_BLOCKS * BLOCK
    lost = [
        i for i in range(VM_BLOCKS) if data[2 * i * BLOCK : (2 * i + 1) * BLOCK] != vm_record(i)
    ]
    assert not lost, (
        f"{len(lost)} of {VM_BLOCKS} acknowledged VM blocks are not on the host: {lost[:10]}"
    )
    wrong = [
        i
        for i in range(VM_BLOCKS)
        if data[(2 * i + 1) * BLOCK : (2 * i + 2) * BLOCK] != host_record(i)
    ]
    assert not wrong, f"{len(wrong)} host blocks changed: {wrong[:10]}"


def test_vm_and_host_append_to_one_file(shared_mount):
    """Both sides append records of their own.  Without a shared end of file they may land on
    each other's; every VM record is on the host unless a host record went to the same place."""
    host, mnt = shared_mount
    (host / "log").write_bytes(b"")
    wait_until(lambda: (mnt / "log").exists(), what="the file shows in the mount")
    vm = VmWriter(mnt / "log", "append", VM_BLOCKS, LAG)
    host_offsets = set()
    fd = os.open(host / "log", os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(VM_BLOCKS // 4):
            if not vm.wait_for(min(VM_BLOCKS, 4 * i + LAG // 2)):
                break
            os.write(fd, host_record(i))
            host_offsets.add(os.lseek(fd, 0, os.SEEK_CUR) - BLOCK)
            vm.go_on(4)
    finally:
        os.close(fd)
    vm.finish()
    assert_monotonic(vm.acked)
    offsets = [offset for offset, _ in vm.acked]
    assert len(set(offsets)) == len(offsets), "the VM's writer wrote over its own records"
    wait_settled(host, mnt)
    data = (host / "log").read_bytes()
    lost = [
        (i, offset)
        for i, offset in enumerate(offsets)
        if offset not in host_offsets and data[offset : offset + BLOCK] != vm_record(i)
    ]
    assert not lost, f"{len(lost)} of {len(offsets)} VM records are not on the host: {lost[:10]}"
    print(json.dumps({"vm": len(offsets), "host": len(host_offsets), "size": len(data)}))


def test_host_rewrites_a_header_while_the_vm_appends(shared_mount):
    """The host keeps rewriting the file's first block (every rewrite is a host change the
    client replays) while the VM appends after it: no VM record may be cut or written over."""
    host, mnt = shared_mount
    (host / "journal").write_bytes(host_record(0))
    wait_until(lambda: (mnt / "journal").exists(), what="the file shows in the mount")
    vm = VmWriter(mnt / "journal", "append", VM_BLOCKS, LAG)
    fd = os.open(host / "journal", os.O_WRONLY)
    rewrites = 0
    try:
        while vm.wait_for(rewrites + 1) and rewrites < VM_BLOCKS:
            os.pwrite(fd, host_record(rewrites), 0)
            rewrites += 1
            vm.go_on()
    finally:
        os.close(fd)
    vm.finish()
    assert_monotonic(vm.acked)
    offsets = [offset for offset, _ in vm.acked]
    assert len(set(offsets)) == len(offsets), "the VM's writer wrote over its own records"
    wait_settled(host, mnt)
    data = (host / "journal").read_bytes()
    assert len(data) == (VM_BLOCKS + 1) * BLOCK
    lost = [i for i, offset in enumerate(offsets) if data[offset : offset + BLOCK] != vm_record(i)]
    assert not lost, f"{len(lost)} of {len(offsets)} VM records are not on the host: {lost[:10]}"


def test_a_host_truncate_wins(shared_mount):
    """The host shortening a file the VM wrote is a real change: the VM sees the shorter size
    (with the writeback cache too, where the kernel otherwise keeps its own size)."""
    host, mnt = shared_mount
    with open(mnt / "cut", "wb") as f:
        f.write(vm_record(0) * 8)
        f.flush()
        os.fsync(f.fileno())
    wait_until(lambda: (host / "cut").stat().st_size == 8 * BLOCK, what="the VM's file on the host")
    assert (mnt / "cut").stat().st_size == 8 * BLOCK
    os.truncate(host / "cut", 3 * BLOCK)
    wait_until(
        lambda: (mnt / "cut").stat().st_size == 3 * BLOCK, what="the VM sees the host's truncate"
    )
    assert (mnt / "cut").read_bytes() == vm_record(0) * 3
