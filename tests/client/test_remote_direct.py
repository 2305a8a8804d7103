"""RemoteFileSystem called directly (no FUSE mount) against a real server in a subprocess.

The server is ``serve_main`` in its own process listening on tcp:127.0.0.1:0, so the client and
server share nothing but the socket and the disk, as in a VM.
"""

from __future__ import annotations

import errno
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from waiting import wait_until

import bridgefs
from bridgefs.client import RemoteFileSystem
from bridgefs.fuse.filesystem import TIME_NOW, Context, FsError, SetAttr

CTX = Context()
SRC = str(pathlib.Path(bridgefs.__file__).resolve().parent.parent)
_SERVE = (
    "import sys; from bridgefs.server.main import serve_main; sys.exit(serve_main(sys.argv[1:]))"
)


def as_user(uid: int) -> list[str]:
    """A command prefix running as ``uid`` (its own group, no supplementary groups, no
    capabilities): setpriv, as tests/multiuser does."""
    return ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"]


class ServerProcess:
    def __init__(self, shares: list[str], *extra: str, user: int | None = None, log_dir=None):
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
        )
        args = [sys.executable, "-c", _SERVE, "--listen", "tcp:127.0.0.1:0", "--insecure", *extra]
        if user is not None:
            args = [*as_user(user), *args]
        for share in shares:
            args += ["--share", share]
        self.log = open(
            os.path.join(
                log_dir or tempfile.gettempdir(), f"bridgefs-server-{os.getpid()}-{id(self)}.log"
            ),
            "w+",
        )
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("bridgefs: listening on "):
            self.log.seek(0)
            why = self.log.read()  # before stop() closes it
            self.stop()
            raise RuntimeError(f"server did not start: {line!r} {why}")
        self.address = line.split()[-1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """One server for the module: share "rw" and a read-only view of it, "ro"."""
    root = tmp_path_factory.mktemp("host")
    share = root / "share"
    share.mkdir()
    server = ServerProcess([f"rw={share}", f"ro={share}:ro"], log_dir=root)
    yield server, share
    server.stop()


@pytest.fixture
def fs(host):
    server, _ = host
    with RemoteFileSystem(server.address, "rw") as remote:
        yield remote


@pytest.fixture
def here(host, fs, request):
    """A fresh directory for this test in the share: (its handle, its host path)."""
    _, share = host
    path = share / request.node.name.replace("[", "_").replace("]", "_")
    path.mkdir()
    return fs.lookup(CTX, 1, os.fsencode(path.name)).ino, path


def _stat_fields(st):
    return (
        st.st_ino,
        st.st_mode,
        st.st_nlink,
        st.st_uid,
        st.st_gid,
        st.st_rdev,
        st.st_size,
        st.st_blocks,
        st.st_atime_ns,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )


def _attr_fields(a):
    return (
        a.ino,
        a.mode,
        a.nlink,
        a.uid,
        a.gid,
        a.rdev,
        a.size,
        a.blocks,
        a.atime_ns,
        a.mtime_ns,
        a.ctime_ns,
    )


def _write_file(fs, parent, name, data, mode=0o644):
    entry, opened = fs.create(CTX, parent, name, mode, 0, os.O_RDWR)
    assert fs.write(CTX, entry.ino, opened.fh, 0, data, 0) == len(data)
    fs.release(CTX, entry.ino, opened.fh, 0)
    return entry


# --- names and attributes ----------------------------------------------------------------------


def test_attrs_pass_through_with_host_inode_numbers(fs, here):
    parent, path = here
    (path / "f").write_bytes(b"12345")
    os.utime(path / "f", ns=(1_234_567_891_123_456_789, 1_111_111_111_222_333_444))
    entry = fs.lookup(CTX, parent, b"f")
    st = os.lstat(path / "f")
    assert _attr_fields(entry.attr) == _stat_fields(st)
    assert entry.attr.ino == st.st_ino != entry.ino
    assert (entry.entry_timeout, entry.attr_timeout) == (1.0, 1.0)
    assert _attr_fields(fs.getattr(CTX, entry.ino, None).attr) == _stat_fields(os.lstat(path / "f"))
    assert fs.getattr(CTX, 1, None).attr.ino == os.stat(path.parent).st_ino
    assert fs.root_attr.ino == os.stat(path.parent).st_ino
    assert fs.lookup(CTX, parent, b"f").ino == entry.ino  # one handle per inode


def test_lookup_errors_and_negative_entries(fs, here, host):
    parent, _ = here
    with pytest.raises(FsError) as info:
        fs.lookup(CTX, parent, b"missing")
    assert info.value.errno == errno.ENOENT
    with pytest.raises(FsError) as info:
        fs.lookup(CTX, parent, b"../../etc")
    assert info.value.errno == errno.EINVAL
    with RemoteFileSystem(host[0].address, "rw", negative_timeout=0.5) as other:
        entry = other.lookup(CTX, 1, b"missing")
        assert entry.ino == 0 and entry.entry_timeout == 0.5


def test_names(fs, here):
    parent, path = here
    d = fs.mkdir(CTX, parent, b"sub", 0o750, 0o022)
    assert stat.S_ISDIR(d.attr.mode) and stat.S_IMODE(os.stat(path / "sub").st_mode) == 0o750
    f = _write_file(fs, d.ino, b"f", b"data")
    link = fs.link(CTX, f.ino, parent, b"hard")
    assert link.ino == f.ino and link.attr.nlink == 2 and os.stat(path / "hard").st_nlink == 2
    s = fs.symlink(CTX, parent, b"sym", b"/etc/passwd")
    assert stat.S_ISLNK(s.attr.mode) and os.readlink(path / "sym") == "/etc/passwd"
    assert fs.readlink(CTX, s.ino) == b"/etc/passwd"
    fifo = fs.mknod(CTX, parent, b"fifo", stat.S_IFIFO | 0o640, 0, 0)
    # The guest sees its FIFO; the host keeps a plain placeholder (the ownership overlay never
    # makes special files on the host).
    assert stat.S_ISFIFO(fifo.attr.mode) and stat.S_ISREG(os.lstat(path / "fifo").st_mode)
    fs.rename(CTX, d.ino, b"f", parent, b"moved", 0)
    assert (path / "moved").read_bytes() == b"data" and not (path / "sub" / "f").exists()
    with pytest.raises(FsError) as info:
        fs.rename(CTX, parent, b"moved", parent, b"hard", 1)  # RENAME_NOREPLACE
    assert info.value.errno == errno.EEXIST
    (path / "other").write_bytes(b"other")
    fs.rename(CTX, parent, b"moved", parent, b"other", 2)  # RENAME_EXCHANGE
    assert (path / "moved").read_bytes() == b"other" and (path / "other").read_bytes() == b"data"
    fs.unlink(CTX, parent, b"hard")
    fs.rmdir(CTX, parent, b"sub")
    assert sorted(os.listdir(path)) == ["fifo", "moved", "other", "sym"]
    with pytest.raises(FsError) as info:
        fs.rmdir(CTX, 1, os.fsencode(path.name))
    assert info.value.errno == errno.ENOTEMPTY


def test_setattr(fs, here):
    parent, path = here
    entry = _write_file(fs, parent, b"f", b"0123456789")
    reply = fs.setattr(CTX, entry.ino, SetAttr(mode=0o600), None)
    assert stat.S_IMODE(reply.attr.mode) == 0o600 == stat.S_IMODE(os.stat(path / "f").st_mode)
    reply = fs.setattr(CTX, entry.ino, SetAttr(size=4), None)
    assert reply.attr.size == 4 and (path / "f").read_bytes() == b"0123"
    opened = fs.open(CTX, entry.ino, os.O_RDWR)
    fs.setattr(CTX, entry.ino, SetAttr(size=2), opened.fh)
    fs.release(CTX, entry.ino, opened.fh, 0)
    assert (path / "f").read_bytes() == b"01"
    fs.setattr(CTX, entry.ino, SetAttr(atime_ns=5_000_000_001, mtime_ns=7_000_000_003), None)
    st = os.stat(path / "f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (5_000_000_001, 7_000_000_003)
    before = time.time_ns()
    reply = fs.setattr(CTX, entry.ino, SetAttr(mtime_ns=TIME_NOW), None)  # atime: omitted
    st = os.stat(path / "f")
    assert st.st_atime_ns == 5_000_000_001 and st.st_mtime_ns >= before - 10**9
    assert reply.attr.mtime_ns == st.st_mtime_ns
    uid = os.getuid()
    fs.setattr(CTX, entry.ino, SetAttr(uid=uid, gid=os.getgid()), None)
    # A symlink's own times change; its target's do not.
    (path / "target").write_bytes(b"t")
    target_mtime = os.stat(path / "target").st_mtime_ns
    link = fs.symlink(CTX, parent, b"l", b"target")
    fs.setattr(CTX, link.ino, SetAttr(mtime_ns=3_000_000_000), None)
    assert os.lstat(path / "l").st_mtime_ns == 3_000_000_000
    assert os.stat(path / "target").st_mtime_ns == target_mtime


def test_uid_gid_override(host, here):
    parent, path = here
    (path / "f").write_bytes(b"x")
    with RemoteFileSystem(host[0].address, "rw", uid=4321, gid=8765) as other:
        entry = other.lookup(CTX, 1, os.fsencode(path.name))
        child = other.lookup(CTX, entry.ino, b"f")
        assert (child.attr.uid, child.attr.gid) == (4321, 8765)
        assert other.getattr(CTX, child.ino, None).attr.uid == 4321
        dh = other.opendir(CTX, entry.ino, 0).fh
        plus = [r for r in other.readdir(CTX, entry.ino, dh, 0, True) if r.entry]
        assert all((r.entry.attr.uid, r.entry.attr.gid) == (4321, 8765) for r in plus)
        other.releasedir(CTX, entry.ino, dh)
        other.setattr(CTX, child.ino, SetAttr(uid=4321, gid=8765), None)  # a no-op
        assert os.stat(path / "f").st_uid == os.getuid()
        with pytest.raises(FsError) as info:
            other.setattr(CTX, child.ino, SetAttr(uid=0), None)
        assert info.value.errno == errno.EPERM


def test_xattrs(fs, here):
    parent, path = here
    entry = _write_file(fs, parent, b"f", b"x")
    fs.setxattr(CTX, entry.ino, b"user.comment", b"\x00binary\xff", 0)
    assert os.getxattr(path / "f", "user.comment") == b"\x00binary\xff"
    assert fs.getxattr(CTX, entry.ino, b"user.comment") == b"\x00binary\xff"
    assert b"user.comment" in fs.listxattr(CTX, entry.ino)
    fs.removexattr(CTX, entry.ino, b"user.comment")
    with pytest.raises(FsError) as info:
        fs.getxattr(CTX, entry.ino, b"user.comment")
    assert info.value.errno == errno.ENODATA


def test_statfs_access_and_syncs(fs, here):
    parent, path = here
    st = os.statvfs(path)
    got = fs.statfs(CTX, 1)
    assert (got.bsize, got.frsize, got.namelen, got.blocks, got.files) == (
        st.f_bsize,
        st.f_frsize,
        st.f_namemax,
        st.f_blocks,
        st.f_files,
    )
    entry = _write_file(fs, parent, b"f", b"x")
    fs.access(CTX, entry.ino, os.R_OK | os.W_OK)
    fs.access(CTX, entry.ino, os.F_OK)
    opened = fs.open(CTX, entry.ino, os.O_RDWR)
    fs.fsync(CTX, entry.ino, opened.fh, False)
    fs.fsync(CTX, entry.ino, opened.fh, True)
    fs.flush(CTX, entry.ino, opened.fh, 0)
    fs.release(CTX, entry.ino, opened.fh, 0)
    dh = fs.opendir(CTX, parent, 0).fh
    fs.fsyncdir(CTX, parent, dh, False)
    fs.releasedir(CTX, parent, dh)
    fs.syncfs(CTX, 1)


# --- file data ---------------------------------------------------------------------------------


def test_writes_land_on_disk_byte_for_byte(fs, here):
    parent, path = here
    data = os.urandom(3 * (1 << 20) + 12345)
    entry, opened = fs.create(CTX, parent, b"big", 0o644, 0, os.O_RDWR)
    assert fs.write(CTX, entry.ino, opened.fh, 0, data, 0) == len(data)  # split into 1 MiB calls
    fs.flush(CTX, entry.ino, opened.fh, 0)  # a close: writes may be answered before they land
    assert (path / "big").read_bytes() == data
    patch = b"PATCH" * 1000
    fs.write(CTX, entry.ino, opened.fh, 1_000_000, patch, 0)
    expected = data[:1_000_000] + patch + data[1_000_000 + len(patch) :]
    fs.fsync(CTX, entry.ino, opened.fh, False)
    assert (path / "big").read_bytes() == expected
    assert fs.read(CTX, entry.ino, opened.fh, 0, len(expected) + 100) == expected
    assert fs.read(CTX, entry.ino, opened.fh, 1 << 20, 1 << 20) == expected[1 << 20 : 2 << 20]
    assert fs.read(CTX, entry.ino, opened.fh, len(expected), 10) == b""
    fs.write(CTX, entry.ino, opened.fh, len(expected) + 10, b"tail", 0)  # leaves a hole
    fs.flush(CTX, entry.ino, opened.fh, 0)
    assert (path / "big").read_bytes() == expected + bytes(10) + b"tail"
    fs.release(CTX, entry.ino, opened.fh, 0)


def test_create_and_open_flags(fs, here):
    parent, path = here
    (path / "f").write_bytes(b"old contents")
    entry, opened = fs.create(CTX, parent, b"f", 0o644, 0, os.O_WRONLY | os.O_TRUNC)
    assert (path / "f").read_bytes() == b""
    fs.release(CTX, entry.ino, opened.fh, 0)
    with pytest.raises(FsError) as info:
        fs.create(CTX, parent, b"f", 0o644, 0, os.O_WRONLY | os.O_EXCL)
    assert info.value.errno == errno.EEXIST
    entry, opened = fs.create(CTX, parent, b"g", 0o640, 0o022, os.O_WRONLY)
    assert stat.S_IMODE(os.stat(path / "g").st_mode) == 0o640
    fs.write(CTX, entry.ino, opened.fh, 0, b"start", 0)
    fs.flush(CTX, entry.ino, opened.fh, 0)
    fs.release(CTX, entry.ino, opened.fh, 0)
    opened = fs.open(CTX, entry.ino, os.O_WRONLY | os.O_APPEND)
    fs.write(CTX, entry.ino, opened.fh, 0, b"+end", 0)
    fs.flush(CTX, entry.ino, opened.fh, 0)
    fs.release(CTX, entry.ino, opened.fh, 0)
    assert (path / "g").read_bytes() == b"start+end"


def test_keep_cache_is_close_to_open(fs, here):
    parent, path = here
    entry = _write_file(fs, parent, b"f", b"version 1")

    def reopen(flags=os.O_RDONLY):
        opened = fs.open(CTX, entry.ino, flags)
        fs.release(CTX, entry.ino, opened.fh, 0)
        return opened.keep_cache

    assert not reopen()  # first open by this client
    assert reopen()  # nothing changed since
    with open(path / "f", "r+b") as f:  # the host changes it (same size)
        f.write(b"VERSION 1")
    assert not reopen()
    assert reopen()
    opened = fs.open(CTX, entry.ino, os.O_RDWR)
    fs.write(CTX, entry.ino, opened.fh, 0, b"v", 0)
    fs.release(CTX, entry.ino, opened.fh, 0)
    assert not reopen()  # written through this client: the stamp is gone
    assert reopen()


def test_fallocate_lseek_and_copy_file_range(fs, here):
    parent, path = here
    entry, opened = fs.create(CTX, parent, b"f", 0o644, 0, os.O_RDWR)
    fs.fallocate(CTX, entry.ino, opened.fh, 0, 1 << 20, 0)
    assert os.stat(path / "f").st_size == 1 << 20
    fs.write(CTX, entry.ino, opened.fh, 0, b"x" * 8192, 0)
    fs.fallocate(CTX, entry.ino, opened.fh, 0, 4096, 0x01 | 0x02)  # KEEP_SIZE | PUNCH_HOLE
    assert (path / "f").read_bytes()[:8192] == bytes(4096) + b"x" * 4096
    with open(path / "sparse", "wb") as f:
        f.seek(1 << 20)
        f.write(b"data")
    sparse = fs.lookup(CTX, parent, b"sparse")
    sfh = fs.open(CTX, sparse.ino, os.O_RDONLY).fh
    with open(path / "sparse", "rb") as f:
        expected_data = os.lseek(f.fileno(), 0, os.SEEK_DATA)
        expected_hole = os.lseek(f.fileno(), 0, os.SEEK_HOLE)
    assert fs.lseek(CTX, sparse.ino, sfh, 0, os.SEEK_DATA) == expected_data
    assert fs.lseek(CTX, sparse.ino, sfh, 0, os.SEEK_HOLE) == expected_hole
    with pytest.raises(FsError) as info:
        fs.lseek(CTX, sparse.ino, sfh, (1 << 20) + 100, os.SEEK_DATA)
    assert info.value.errno == errno.ENXIO
    copied = fs.copy_file_range(CTX, sparse.ino, sfh, 1 << 20, entry.ino, opened.fh, 10, 4, 0)
    assert copied == 4
    assert (path / "f").read_bytes()[10:14] == b"data"
    fs.release(CTX, sparse.ino, sfh, 0)
    fs.release(CTX, entry.ino, opened.fh, 0)


def test_special_files_cannot_be_opened(fs, here):
    parent, path = here
    os.mkfifo(path / "fifo")
    entry = fs.lookup(CTX, parent, b"fifo")
    with pytest.raises(FsError) as info:
        fs.open(CTX, entry.ino, os.O_RDONLY)
    assert info.value.errno == errno.ENXIO


# --- directories ---------------------------------------------------------------------------------


def _consume(fs, ino, fh, plus, per_call):
    """Read a directory the way the FUSE layer does: ``per_call`` records fit in each reply; the
    record after them is taken from the iterator, found not to fit, and asked for again."""
    out, offset = [], 0
    while True:
        taken = []
        for rec in fs.readdir(CTX, ino, fh, offset, plus):
            if len(taken) == per_call:
                break
            taken.append(rec)
        if not taken:
            return out
        out += taken
        offset = taken[-1].offset


def test_readdirplus_lists_with_handles_and_attrs(fs, here):
    parent, path = here
    names = {b"f%04d" % i for i in range(1500)}
    for name in names:
        (path / name.decode()).write_bytes(name)
    (path / "d").mkdir()
    os.symlink("f0000", path / "l")
    calls = []
    real = fs._stub.ReadDir
    fs._stub.ReadDir = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        dh = fs.opendir(CTX, parent, 0).fh
        records = _consume(fs, parent, dh, True, per_call=25)
    finally:
        fs._stub.ReadDir = real
    listed = [r.name for r in records]
    assert sorted(listed) == sorted(names | {b".", b"..", b"d", b"l"})
    assert len(calls) <= 1500 // fs.readdir_batch + 3  # batches, not a call per kernel buffer
    by_name = {r.name: r for r in records}
    assert by_name[b"."].entry is None and by_name[b".."].entry is None
    assert by_name[b"."].ino == os.stat(path).st_ino
    for name in (b"f0007", b"d", b"l"):
        rec = by_name[name]
        st = os.lstat(path / name.decode())
        assert rec.ino == rec.entry.attr.ino == st.st_ino
        assert _attr_fields(rec.entry.attr)[:8] == _stat_fields(st)[:8]
        assert rec.dtype == stat.S_IFMT(st.st_mode) >> 12
        assert rec.entry.ino == fs.lookup(CTX, parent, name).ino  # the handle is the node id
    offsets = [r.offset for r in records]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    fs.releasedir(CTX, parent, dh)

    # Return every reference the "kernel" got; afterwards no node of the listing may survive on
    # the server (nothing leaked by the batches), so a lookup allocates fresh handles.
    seen = max(r.entry.ino for r in records if r.entry)
    for rec in records:
        if rec.entry:
            fs.forget(rec.entry.ino)
    fs.flush_forgets()
    for name in (b"f0000", b"f0999", b"f1499", b"d"):
        assert fs.lookup(CTX, parent, name).ino > seen


def test_readdir_without_plus_and_rewind(fs, here):
    parent, path = here
    (path / "a").write_bytes(b"")
    (path / "sub").mkdir()
    dh = fs.opendir(CTX, parent, 0).fh
    records = list(fs.readdir(CTX, parent, dh, 0, False))
    assert {r.name for r in records} == {b".", b"..", b"a", b"sub"}
    assert all(r.entry is None for r in records)
    by_name = {r.name: r for r in records}
    assert by_name[b"a"].ino == os.stat(path / "a").st_ino and by_name[b"a"].dtype == 8
    assert by_name[b"sub"].dtype == 4
    # Resume in the middle, then rewind and see a name created since.
    assert [r.name for r in fs.readdir(CTX, parent, dh, records[1].offset, False)] == [
        r.name for r in records[2:]
    ]
    (path / "new").write_bytes(b"")
    assert b"new" in {r.name for r in fs.readdir(CTX, parent, dh, 0, False)}
    fs.releasedir(CTX, parent, dh)
    with pytest.raises(FsError) as info:
        list(fs.readdir(CTX, parent, dh, 0, False))
    assert info.value.errno == errno.EBADF


# --- lookup counts -----------------------------------------------------------------------------


def test_forget_drops_the_server_handle(fs, here):
    parent, path = here
    (path / "f").write_bytes(b"x")
    first = fs.lookup(CTX, parent, b"f").ino
    assert fs.lookup(CTX, parent, b"f").ino == first
    fs.forget(first)  # the kernel forgot both references
    fs.flush_forgets()
    with pytest.raises(FsError) as info:
        fs.getattr(CTX, first, None)
    assert info.value.errno == errno.ESTALE
    assert fs.lookup(CTX, parent, b"f").ino > first


def test_lookup_racing_with_a_queued_forget(fs, here):
    parent, path = here
    (path / "f").write_bytes(b"x")
    h = fs.lookup(CTX, parent, b"f").ino
    fs.forget(h)  # queued, not yet sent
    assert fs.lookup(CTX, parent, b"f").ino == h  # the server still has it: a new reference
    fs.flush_forgets()
    assert fs.getattr(CTX, h, None).attr.size == 1  # the new reference keeps it alive
    fs.forget(h)
    fs.flush_forgets()
    with pytest.raises(FsError):
        fs.getattr(CTX, h, None)


def test_forget_with_kernel_counts(fs, here):
    parent, path = here
    (path / "f").write_bytes(b"x")
    h = fs.lookup(CTX, parent, b"f").ino
    fs.lookup(CTX, parent, b"f")
    fs.forget(h, nlookup=1)
    fs.flush_forgets()
    fs.getattr(CTX, h, None)
    fs.forget(h, nlookup=1)
    fs.flush_forgets()
    with pytest.raises(FsError):
        fs.getattr(CTX, h, None)


# --- read-only ---------------------------------------------------------------------------------


def _mutations(fs, parent, file_ino, fh):
    return [
        lambda: fs.mkdir(CTX, parent, b"n", 0o755, 0),
        lambda: fs.mknod(CTX, parent, b"n", stat.S_IFIFO | 0o644, 0, 0),
        lambda: fs.symlink(CTX, parent, b"n", b"x"),
        lambda: fs.link(CTX, file_ino, parent, b"n"),
        lambda: fs.unlink(CTX, parent, b"f"),
        lambda: fs.rmdir(CTX, parent, b"d"),
        lambda: fs.rename(CTX, parent, b"f", parent, b"g", 0),
        lambda: fs.setattr(CTX, file_ino, SetAttr(size=0), None),
        lambda: fs.setattr(CTX, file_ino, SetAttr(mode=0o777), None),
        lambda: fs.setxattr(CTX, file_ino, b"user.x", b"1", 0),
        lambda: fs.removexattr(CTX, file_ino, b"user.x"),
        lambda: fs.create(CTX, parent, b"n", 0o644, 0, os.O_WRONLY),
        lambda: fs.open(CTX, file_ino, os.O_WRONLY),
        lambda: fs.open(CTX, file_ino, os.O_RDONLY | os.O_TRUNC),
        lambda: fs.write(CTX, file_ino, fh, 0, b"x", 0),
        lambda: fs.fallocate(CTX, file_ino, fh, 0, 100, 0),
        lambda: fs.copy_file_range(CTX, file_ino, fh, 0, file_ino, fh, 10, 1, 0),
        lambda: fs.access(CTX, file_ino, os.W_OK),
    ]


def _tree(path):
    return sorted(
        (
            str(p.relative_to(path)),
            p.lstat().st_mode,
            p.lstat().st_mtime_ns,
            p.read_bytes() if p.is_file() else None,
        )
        for p in path.rglob("*")
    )


@pytest.mark.parametrize("how", ["share", "client"])
def test_read_only(host, here, how):
    server, share = host
    _, path = here
    (path / "f").write_bytes(b"keep me")
    (path / "d").mkdir()
    before = _tree(path)
    share_name, flag = ("ro", False) if how == "share" else ("rw", True)
    with RemoteFileSystem(server.address, share_name, read_only=flag) as ro:
        assert ro.read_only
        parent = ro.lookup(CTX, 1, os.fsencode(path.name)).ino
        f = ro.lookup(CTX, parent, b"f")
        opened = ro.open(CTX, f.ino, os.O_RDONLY)
        assert ro.read(CTX, f.ino, opened.fh, 0, 100) == b"keep me"
        for mutate in _mutations(ro, parent, f.ino, opened.fh):
            with pytest.raises(FsError) as info:
                mutate()
            assert info.value.errno == errno.EROFS
        ro.release(CTX, f.ino, opened.fh, 0)
    assert _tree(path) == before


# --- failures and sessions ---------------------------------------------------------------------


def test_handshake_failures(host):
    server, _ = host
    with pytest.raises(FsError) as info:
        RemoteFileSystem(server.address, "nope")
    assert info.value.errno == errno.ENOENT
    with pytest.raises(ValueError):
        RemoteFileSystem("http://example", "rw")
    t0 = time.monotonic()
    with pytest.raises(FsError) as info:
        RemoteFileSystem(
            f"unix:{tempfile.gettempdir()}/bridgefs-nobody-{os.getpid()}.sock",
            "rw",
            connect_timeout=1.0,
        )
    assert info.value.errno == errno.ENOTCONN
    assert time.monotonic() - t0 < 30  # gives up, never hangs (how fast is the benchmark's)


def _all_threads_stopped(pid: int) -> bool:
    tasks = os.listdir(f"/proc/{pid}/task")
    states = []
    for tid in tasks:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            states.append(f.read().rsplit(")", 1)[1].split()[0])
    return bool(states) and all(state in ("T", "t") for state in states)


@pytest.mark.timeout(60)
def test_server_gone_or_hung_fails_fast(tmp_path):
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "f").write_bytes(b"x")
    server = ServerProcess([f"s={tmp_path / 'share'}"], log_dir=tmp_path)
    try:
        fs = RemoteFileSystem(server.address, "s", timeout=1.0)
        entry = fs.lookup(CTX, 1, b"f")
        server.proc.send_signal(signal.SIGSTOP)  # hung: the deadline answers
        # kill() returns before the signal stops every thread: until then it may still answer.
        wait_until(lambda: _all_threads_stopped(server.proc.pid), what="the server stops")
        t0 = time.monotonic()
        with pytest.raises(FsError) as info:
            fs.getattr(CTX, entry.ino, None)
        assert info.value.errno == errno.EIO
        assert time.monotonic() - t0 < 30  # the 1 s deadline answers: it never hangs
        server.proc.send_signal(signal.SIGCONT)
        fs.getattr(CTX, entry.ino, None)
        server.proc.kill()  # gone: refused connections answer at once
        server.proc.wait()
        t0 = time.monotonic()
        for _ in range(3):
            with pytest.raises(FsError) as info:
                fs.getattr(CTX, entry.ino, None)
            assert info.value.errno in (errno.ENOTCONN, errno.EIO)
        assert time.monotonic() - t0 < 30
        fs.close()
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_idle_client_keeps_its_session(tmp_path):
    (tmp_path / "share").mkdir()
    # Pings every third of the 6 s limit: a busy machine delays them far less than 4 s.
    server = ServerProcess([f"s={tmp_path / 'share'}"], "--idle-timeout", "6", log_dir=tmp_path)
    try:
        with (
            RemoteFileSystem(server.address, "s") as fs,
            RemoteFileSystem(server.address, "s") as silent,
        ):
            (tmp_path / "share" / "f").write_bytes(b"x")
            h = fs.lookup(CTX, 1, b"f").ino
            silent.session.counts.close()  # no pings from this one
            # The server's log says when it reaped a session; asking the silent one would
            # count as activity.
            wait_until(
                lambda: "reaped after" in pathlib.Path(server.log.name).read_text(),
                what="the server reaps the silent session",
            )
            assert fs.getattr(CTX, h, None).attr.size == 1
            with pytest.raises(FsError) as info:
                silent.getattr(CTX, 1, None)
            assert info.value.errno == errno.ESTALE
    finally:
        server.stop()


def test_concurrent_calls(fs, here):
    parent, path = here
    errors = []

    def work(n):
        try:
            data = os.urandom(200_000 + n)
            entry, opened = fs.create(CTX, parent, b"t%d" % n, 0o644, 0, os.O_RDWR)
            for off in range(0, len(data), 65536):
                fs.write(CTX, entry.ino, opened.fh, off, data[off : off + 65536], 0)
            assert fs.read(CTX, entry.ino, opened.fh, 0, len(data)) == data
            fs.release(CTX, entry.ino, opened.fh, 0)
            assert (path / f"t{n}").read_bytes() == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a server as another user")
@pytest.mark.timeout(60)
def test_unprivileged_server(tmp_path):
    """The server runs as whoever starts it: host permission checks and errnos apply."""
    try:
        subprocess.run(
            [*as_user(65534), sys.executable, "-c", "import grpc"],
            check=True,
            capture_output=True,
            env=dict(os.environ, PYTHONPATH=SRC),
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"user nobody cannot run this Python: {exc}")
    top = pathlib.Path(tempfile.mkdtemp(prefix="bridgefs-nobody-"))
    try:
        os.chmod(top, 0o755)
        share = top / "share"
        share.mkdir()
        (share / "mine").write_bytes(b"mine")
        (share / "roots").write_bytes(b"root only")
        os.chmod(share / "roots", 0o600)
        for p in (share, share / "mine"):
            os.chown(p, 65534, 65534)
        server = ServerProcess([f"s={share}"], user=65534, log_dir=top)
        try:
            with RemoteFileSystem(server.address, "s") as fs:
                roots = fs.lookup(CTX, 1, b"roots")
                with pytest.raises(FsError) as info:
                    fs.open(CTX, roots.ino, os.O_RDONLY)
                assert info.value.errno == errno.EACCES
                mine = fs.lookup(CTX, 1, b"mine")
                # The guest's root may give the file to root in the ownership overlay; the host
                # file stays the server user's, which could not chown it anyway.
                assert fs.setattr(CTX, mine.ino, SetAttr(uid=0), None).attr.uid == 0
                assert os.stat(share / "mine").st_uid == 65534
                # Hard links go through /proc/self/fd, which needs no privilege.
                assert fs.link(CTX, mine.ino, 1, b"mine2").attr.nlink == 2
                made = _write_file(fs, 1, b"new", b"by nobody")
                # Its caller's in the guest, the server user's on the host.
                assert made.attr.uid == CTX.uid and os.stat(share / "new").st_uid == 65534
        finally:
            server.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)
