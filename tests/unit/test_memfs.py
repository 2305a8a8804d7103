"""MemFS called directly, without a mount: the rules a native Linux filesystem follows."""

from __future__ import annotations

import errno
import os
import random
import stat
import threading
import time

import pytest

from bridgefs.fuse.filesystem import ROOT_ID, TIME_NOW, Context, DirEntry, FsError, SetAttr
from bridgefs.memfs import MemFS

CTX = Context(uid=1000, gid=1000)
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


@pytest.fixture
def fs() -> MemFS:
    return MemFS()


def err(fn, *args) -> int:
    with pytest.raises(FsError) as exc:
        fn(*args)
    return exc.value.errno


def mkfile(fs: MemFS, name: bytes, data: bytes = b"", parent: int = ROOT_ID) -> int:
    entry, opened = fs.create(CTX, parent, name, stat.S_IFREG | 0o644, 0o022, os.O_WRONLY)
    if data:
        fs.write(CTX, entry.ino, opened.fh, 0, data, 0)
    fs.release(CTX, entry.ino, opened.fh, 0)
    return entry.ino


def mkdir(fs: MemFS, name: bytes, parent: int = ROOT_ID, mode: int = 0o755) -> int:
    return fs.mkdir(CTX, parent, name, mode, 0o022).ino


def attr(fs: MemFS, ino: int):
    return fs.getattr(CTX, ino, None).attr


def read_all(fs: MemFS, ino: int) -> bytes:
    fh = fs.open(CTX, ino, os.O_RDONLY).fh
    try:
        return fs.read(CTX, ino, fh, 0, 1 << 30)
    finally:
        fs.release(CTX, ino, fh, 0)


def names(fs: MemFS, ino: int = ROOT_ID) -> list[bytes]:
    fh = fs.opendir(CTX, ino, 0).fh
    try:
        return [r.name for r in fs.readdir(CTX, ino, fh, 0, False)]
    finally:
        fs.releasedir(CTX, ino, fh)


# --- construction and options -------------------------------------------------------------------


def test_root_is_directory_with_two_links(fs):
    a = attr(fs, ROOT_ID)
    assert stat.S_ISDIR(a.mode) and a.ino == ROOT_ID and a.nlink == 2
    assert fs.node_count() == 1
    assert names(fs) == [b".", b".."]


def test_timeouts_and_cache_flags_are_used():
    fs = MemFS(entry_timeout=5.0, attr_timeout=7.0, keep_cache=True, cache_dir=True)
    entry, opened = fs.create(CTX, ROOT_ID, b"f", stat.S_IFREG | 0o644, 0, os.O_RDWR)
    assert (entry.entry_timeout, entry.attr_timeout) == (5.0, 7.0)
    assert opened.keep_cache
    assert fs.lookup(CTX, ROOT_ID, b"f").entry_timeout == 5.0
    assert fs.getattr(CTX, entry.ino, None).timeout == 7.0
    assert fs.setattr(CTX, entry.ino, SetAttr(mode=0o600), None).timeout == 7.0
    assert fs.opendir(CTX, ROOT_ID, 0).cache_dir
    assert fs.open(CTX, entry.ino, os.O_RDONLY).keep_cache
    dh = fs.opendir(CTX, ROOT_ID, 0).fh
    [rec] = [r for r in fs.readdir(CTX, ROOT_ID, dh, 0, True) if r.name == b"f"]
    assert (rec.entry.entry_timeout, rec.entry.attr_timeout) == (5.0, 7.0)


def test_negative_lookup():
    assert err(MemFS().lookup, CTX, ROOT_ID, b"missing") == errno.ENOENT
    entry = MemFS(negative_timeout=3.0).lookup(CTX, ROOT_ID, b"missing")
    assert entry.ino == 0 and entry.attr is None and entry.entry_timeout == 3.0


def test_node_ids_count_up_and_are_never_reused(fs):
    a = mkfile(fs, b"a")
    fs.forget(a)
    fs.unlink(CTX, ROOT_ID, b"a")
    b = mkfile(fs, b"b")
    assert a == 2 and b == 3
    assert attr(fs, b).ino == b


# --- creating nodes -----------------------------------------------------------------------------


def test_new_nodes_owner_mode_times_and_links(fs):
    before = time.time_ns()
    f = fs.create(CTX, ROOT_ID, b"f", stat.S_IFREG | 0o640, 0o077, os.O_WRONLY)[0].attr
    d = fs.mkdir(CTX, ROOT_ID, b"d", 0o750, 0o077).attr
    assert f.mode == stat.S_IFREG | 0o640  # the umask argument is not applied again
    assert d.mode == stat.S_IFDIR | 0o750
    assert (f.uid, f.gid, f.nlink, d.nlink) == (1000, 1000, 1, 2)
    assert before <= f.atime_ns == f.mtime_ns == f.ctime_ns <= time.time_ns()
    assert (d.size, d.blocks, d.blksize) == (4096, 8, 4096)
    root = attr(fs, ROOT_ID)
    assert root.nlink == 3 and root.mtime_ns >= d.ctime_ns


def test_mknod_kinds(fs):
    fifo = fs.mknod(CTX, ROOT_ID, b"fifo", stat.S_IFIFO | 0o600, 0, 0).attr
    sock = fs.mknod(CTX, ROOT_ID, b"sock", stat.S_IFSOCK | 0o600, 0, 0).attr
    chr_ = fs.mknod(CTX, ROOT_ID, b"chr", stat.S_IFCHR | 0o600, os.makedev(1, 3), 0).attr
    blk = fs.mknod(CTX, ROOT_ID, b"blk", stat.S_IFBLK | 0o600, os.makedev(8, 1), 0).attr
    reg = fs.mknod(CTX, ROOT_ID, b"reg", stat.S_IFREG | 0o600, 0, 0).attr
    assert stat.S_ISFIFO(fifo.mode) and stat.S_ISSOCK(sock.mode) and stat.S_ISREG(reg.mode)
    assert stat.S_ISCHR(chr_.mode) and chr_.rdev == os.makedev(1, 3)
    assert stat.S_ISBLK(blk.mode) and blk.rdev == os.makedev(8, 1)
    assert fifo.rdev == 0
    assert err(fs.mknod, CTX, ROOT_ID, b"dir", stat.S_IFDIR | 0o700, 0, 0) == errno.EPERM
    assert err(fs.mknod, CTX, ROOT_ID, b"fifo", stat.S_IFIFO | 0o600, 0, 0) == errno.EEXIST


def test_symlink_and_readlink(fs):
    target = b"../some/where" * 10
    e = fs.symlink(CTX, ROOT_ID, b"l", target)
    assert stat.S_ISLNK(e.attr.mode) and e.attr.size == len(target)
    assert fs.readlink(CTX, e.ino) == target
    f = mkfile(fs, b"f")
    assert err(fs.readlink, CTX, f) == errno.EINVAL
    assert err(fs.readlink, CTX, ROOT_ID) == errno.EINVAL


def test_setgid_directory_is_inherited(fs):
    d = mkdir(fs, b"d", mode=0o2775)
    fs.setattr(CTX, d, SetAttr(gid=555, mode=0o2775), None)
    other = Context(uid=7, gid=7)
    f = fs.create(other, d, b"f", stat.S_IFREG | 0o644, 0, os.O_WRONLY)[0].attr
    sub = fs.mkdir(other, d, b"sub", 0o755, 0).attr
    plain = fs.mkdir(other, ROOT_ID, b"plain", 0o755, 0).attr
    assert (f.uid, f.gid) == (7, 555) and not f.mode & stat.S_ISGID
    assert sub.gid == 555 and sub.mode & stat.S_ISGID
    assert plain.gid == 7 and not plain.mode & stat.S_ISGID


def test_existing_name_eexist(fs):
    f = mkfile(fs, b"f")
    mkdir(fs, b"d")
    for name in (b"f", b"d"):
        assert err(fs.mkdir, CTX, ROOT_ID, name, 0o755, 0) == errno.EEXIST
        assert err(fs.symlink, CTX, ROOT_ID, name, b"x") == errno.EEXIST
        assert err(fs.mknod, CTX, ROOT_ID, name, stat.S_IFIFO | 0o644, 0, 0) == errno.EEXIST
        assert (
            err(
                fs.create,
                CTX,
                ROOT_ID,
                name,
                stat.S_IFREG | 0o644,
                0,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL,
            )
            == errno.EEXIST
        )
        assert err(fs.link, CTX, f, ROOT_ID, name) == errno.EEXIST


def test_create_on_existing_name_without_excl_opens_it(fs):
    f = mkfile(fs, b"f", b"keep me")
    entry, opened = fs.create(CTX, ROOT_ID, b"f", stat.S_IFREG | 0o600, 0, os.O_RDWR | os.O_CREAT)
    assert entry.ino == f
    assert fs.read(CTX, f, opened.fh, 0, 100) == b"keep me"
    assert err(fs.create, CTX, ROOT_ID, b".", stat.S_IFREG, 0, os.O_RDWR) == errno.EEXIST
    assert err(fs.mkdir, CTX, ROOT_ID, b"..", 0o755, 0) == errno.EEXIST
    mkdir(fs, b"d")
    assert err(fs.create, CTX, ROOT_ID, b"d", stat.S_IFREG | 0o600, 0, os.O_RDWR) == errno.EISDIR


def test_missing_or_non_directory_parent(fs):
    f = mkfile(fs, b"f")
    for parent, expected in ((999, errno.ENOENT), (f, errno.ENOTDIR)):
        assert err(fs.lookup, CTX, parent, b"x") == expected
        assert err(fs.mkdir, CTX, parent, b"x", 0o755, 0) == expected
        assert err(fs.mknod, CTX, parent, b"x", stat.S_IFREG | 0o644, 0, 0) == expected
        assert err(fs.symlink, CTX, parent, b"x", b"t") == expected
        assert err(fs.create, CTX, parent, b"x", stat.S_IFREG | 0o644, 0, 0) == expected
        assert err(fs.unlink, CTX, parent, b"x") == expected
        assert err(fs.rmdir, CTX, parent, b"x") == expected
        assert err(fs.link, CTX, f, parent, b"x") == expected
    assert err(fs.unlink, CTX, ROOT_ID, b"missing") == errno.ENOENT
    assert err(fs.rmdir, CTX, ROOT_ID, b"missing") == errno.ENOENT
    assert err(fs.getattr, CTX, 999, None) == errno.ENOENT


def test_no_new_entries_in_removed_directory(fs):
    d = mkdir(fs, b"d")
    fs.rmdir(CTX, ROOT_ID, b"d")
    assert attr(fs, d).nlink == 0
    assert err(fs.mkdir, CTX, d, b"x", 0o755, 0) == errno.ENOENT
    assert err(fs.create, CTX, d, b"x", stat.S_IFREG | 0o644, 0, 0) == errno.ENOENT


def test_name_too_long_everywhere(fs):
    long, ok = b"n" * 256, b"n" * 255
    f = mkfile(fs, ok)
    assert fs.lookup(CTX, ROOT_ID, ok).ino == f
    calls = [
        (fs.lookup, CTX, ROOT_ID, long),
        (fs.mknod, CTX, ROOT_ID, long, stat.S_IFREG | 0o644, 0, 0),
        (fs.mkdir, CTX, ROOT_ID, long, 0o755, 0),
        (fs.symlink, CTX, ROOT_ID, long, b"t"),
        (fs.link, CTX, f, ROOT_ID, long),
        (fs.unlink, CTX, ROOT_ID, long),
        (fs.rmdir, CTX, ROOT_ID, long),
        (fs.rename, CTX, ROOT_ID, ok, ROOT_ID, long, 0),
        (fs.rename, CTX, ROOT_ID, long, ROOT_ID, b"x", 0),
        (fs.create, CTX, ROOT_ID, long, stat.S_IFREG | 0o644, 0, 0),
    ]
    for fn, *args in calls:
        assert err(fn, *args) == errno.ENAMETOOLONG, fn.__name__
    assert err(MemFS(negative_timeout=1.0).lookup, CTX, ROOT_ID, long) == errno.ENAMETOOLONG
    assert names(fs) == [b".", b"..", ok]


def test_lookup_dot_and_dotdot(fs):
    d = mkdir(fs, b"d")
    assert fs.lookup(CTX, d, b".").ino == d
    assert fs.lookup(CTX, d, b"..").ino == ROOT_ID
    assert fs.lookup(CTX, ROOT_ID, b"..").ino == ROOT_ID


# --- links and removal --------------------------------------------------------------------------


def test_link_and_unlink_counts(fs):
    f = mkfile(fs, b"a", b"x")
    d = mkdir(fs, b"d")
    e = fs.link(CTX, f, d, b"b")
    assert e.ino == f and e.attr.nlink == 2
    assert attr(fs, d).nlink == 2  # file links do not count in a directory's nlink
    assert err(fs.link, CTX, d, ROOT_ID, b"dlink") == errno.EPERM
    fs.unlink(CTX, ROOT_ID, b"a")
    assert attr(fs, f).nlink == 1
    assert read_all(fs, fs.lookup(CTX, d, b"b").ino) == b"x"


def test_unlink_directory_eisdir_rmdir_file_enotdir(fs):
    mkdir(fs, b"d")
    mkfile(fs, b"f")
    fs.symlink(CTX, ROOT_ID, b"l", b"d")
    assert err(fs.unlink, CTX, ROOT_ID, b"d") == errno.EISDIR
    assert err(fs.rmdir, CTX, ROOT_ID, b"f") == errno.ENOTDIR
    assert err(fs.rmdir, CTX, ROOT_ID, b"l") == errno.ENOTDIR
    fs.unlink(CTX, ROOT_ID, b"l")


def test_rmdir_non_empty_and_parent_nlink(fs):
    d = mkdir(fs, b"d")
    mkdir(fs, b"sub", d)
    assert attr(fs, d).nlink == 3 and attr(fs, ROOT_ID).nlink == 3
    assert err(fs.rmdir, CTX, ROOT_ID, b"d") == errno.ENOTEMPTY
    fs.rmdir(CTX, d, b"sub")
    assert attr(fs, d).nlink == 2
    fs.rmdir(CTX, ROOT_ID, b"d")
    assert attr(fs, ROOT_ID).nlink == 2


def test_entry_changes_update_parent_times(fs):
    d = mkdir(fs, b"d")
    for op in (
        lambda: mkfile(fs, b"f", parent=d),
        lambda: fs.unlink(CTX, d, b"f"),
        lambda: fs.symlink(CTX, d, b"l", b"t"),
        lambda: fs.rename(CTX, d, b"l", d, b"m", 0),
    ):
        fs.setattr(CTX, d, SetAttr(mtime_ns=1, ctime_ns=1), None)
        op()
        a = attr(fs, d)
        assert a.mtime_ns > 1 and a.ctime_ns > 1


# --- node lifetime ------------------------------------------------------------------------------


def test_unlinked_open_file_stays_usable_until_release(fs):
    entry, opened = fs.create(CTX, ROOT_ID, b"f", stat.S_IFREG | 0o644, 0, os.O_RDWR)
    ino, fh = entry.ino, opened.fh
    fs.write(CTX, ino, fh, 0, b"still here", 0)
    fs.unlink(CTX, ROOT_ID, b"f")
    fs.forget(ino)
    assert err(fs.lookup, CTX, ROOT_ID, b"f") == errno.ENOENT
    assert fs.read(CTX, ino, fh, 0, 100) == b"still here"
    assert fs.write(CTX, ino, fh, 0, b"STILL", 0) == 5
    assert fs.read(CTX, ino, fh, 0, 100) == b"STILL here"
    a = fs.getattr(CTX, ino, fh).attr
    assert (a.nlink, a.size) == (0, 10)
    fs.setattr(CTX, ino, SetAttr(size=5), fh)
    assert fs.node_count() == 2
    fs.release(CTX, ino, fh, 0)
    assert fs.node_count() == 1
    assert err(fs.getattr, CTX, ino, None) == errno.ENOENT


def test_node_freed_only_after_forget_nlink_zero_and_release(fs):
    ino = mkfile(fs, b"f", b"x")
    fh = fs.open(CTX, ino, os.O_RDONLY).fh
    fs.unlink(CTX, ROOT_ID, b"f")
    assert fs.node_count() == 2  # still known to the kernel and open
    fs.release(CTX, ino, fh, 0)
    assert fs.node_count() == 2  # still known to the kernel
    fs.forget(ino)
    assert fs.node_count() == 1

    # the other order: forget first, then the last link goes
    ino = mkfile(fs, b"g")
    fs.forget(ino)
    assert fs.node_count() == 2  # still linked
    fs.lookup(CTX, ROOT_ID, b"g")  # handed out again
    fs.unlink(CTX, ROOT_ID, b"g")
    assert fs.node_count() == 2
    fs.forget(ino)
    assert fs.node_count() == 1


def test_removed_directory_freed_after_forget(fs):
    d = mkdir(fs, b"d")
    fh = fs.opendir(CTX, d, 0).fh
    fs.rmdir(CTX, ROOT_ID, b"d")
    assert list(fs.readdir(CTX, d, fh, 0, False)) == []
    fs.forget(d)
    assert fs.node_count() == 2
    fs.releasedir(CTX, d, fh)
    assert fs.node_count() == 1


def test_forget_of_unknown_or_root_is_harmless(fs):
    fs.forget(12345)
    fs.forget(ROOT_ID)
    assert attr(fs, ROOT_ID).ino == ROOT_ID


def test_link_to_unlinked_file_enoent(fs):
    ino = mkfile(fs, b"f")
    fh = fs.open(CTX, ino, os.O_RDONLY).fh
    fs.unlink(CTX, ROOT_ID, b"f")
    assert err(fs.link, CTX, ino, ROOT_ID, b"again") == errno.ENOENT
    fs.release(CTX, ino, fh, 0)


# --- rename -------------------------------------------------------------------------------------


def test_rename_simple_and_replace(fs):
    a = mkfile(fs, b"a", b"A")
    b = mkfile(fs, b"b", b"B")
    fh = fs.open(CTX, b, os.O_RDONLY).fh
    fs.rename(CTX, ROOT_ID, b"a", ROOT_ID, b"b", 0)
    assert names(fs) == [b".", b"..", b"b"]
    assert fs.lookup(CTX, ROOT_ID, b"b").ino == a
    assert fs.getattr(CTX, b, fh).attr.nlink == 0
    assert fs.read(CTX, b, fh, 0, 10) == b"B"
    fs.release(CTX, b, fh, 0)
    fs.forget(b)
    assert fs.node_count() == 2


def test_rename_type_errors(fs):
    mkfile(fs, b"f")
    mkdir(fs, b"d")
    full = mkdir(fs, b"full")
    mkfile(fs, b"x", parent=full)
    assert err(fs.rename, CTX, ROOT_ID, b"f", ROOT_ID, b"d", 0) == errno.EISDIR
    assert err(fs.rename, CTX, ROOT_ID, b"d", ROOT_ID, b"f", 0) == errno.ENOTDIR
    assert err(fs.rename, CTX, ROOT_ID, b"d", ROOT_ID, b"full", 0) == errno.ENOTEMPTY
    assert err(fs.rename, CTX, ROOT_ID, b"missing", ROOT_ID, b"y", 0) == errno.ENOENT
    assert err(fs.rename, CTX, ROOT_ID, b"f", 999, b"y", 0) == errno.ENOENT
    assert err(fs.rename, CTX, ROOT_ID, b"f", ROOT_ID, b"y", 4) == errno.EINVAL
    assert err(fs.rename, CTX, ROOT_ID, b"f", ROOT_ID, b"y", 3) == errno.EINVAL
    assert names(fs) == [b".", b"..", b"f", b"d", b"full"]


def test_rename_dir_into_own_descendant_einval(fs):
    d = mkdir(fs, b"d")
    sub = mkdir(fs, b"sub", d)
    assert err(fs.rename, CTX, ROOT_ID, b"d", sub, b"moved", 0) == errno.EINVAL
    assert err(fs.rename, CTX, ROOT_ID, b"d", d, b"moved", 0) == errno.EINVAL
    assert err(fs.rename, CTX, ROOT_ID, b"d", sub, b"moved", RENAME_NOREPLACE) == errno.EINVAL
    # the target an ancestor of the source: ENOTEMPTY, EINVAL for an exchange
    assert err(fs.rename, CTX, d, b"sub", ROOT_ID, b"d", 0) == errno.ENOTEMPTY
    assert err(fs.rename, CTX, d, b"sub", ROOT_ID, b"d", RENAME_EXCHANGE) == errno.EINVAL


def test_rename_onto_same_inode_is_noop(fs):
    f = mkfile(fs, b"a")
    fs.link(CTX, f, ROOT_ID, b"b")
    before = attr(fs, f)
    fs.rename(CTX, ROOT_ID, b"a", ROOT_ID, b"b", 0)
    fs.rename(CTX, ROOT_ID, b"a", ROOT_ID, b"a", 0)
    assert names(fs) == [b".", b"..", b"a", b"b"]
    assert attr(fs, f) == before
    # NOREPLACE is checked first: the name exists
    assert err(fs.rename, CTX, ROOT_ID, b"a", ROOT_ID, b"a", RENAME_NOREPLACE) == errno.EEXIST


def test_rename_noreplace(fs):
    mkfile(fs, b"a")
    mkfile(fs, b"b")
    mkdir(fs, b"d")
    assert err(fs.rename, CTX, ROOT_ID, b"a", ROOT_ID, b"b", RENAME_NOREPLACE) == errno.EEXIST
    assert err(fs.rename, CTX, ROOT_ID, b"a", ROOT_ID, b"d", RENAME_NOREPLACE) == errno.EEXIST
    fs.rename(CTX, ROOT_ID, b"a", ROOT_ID, b"c", RENAME_NOREPLACE)
    assert names(fs) == [b".", b"..", b"b", b"d", b"c"]


def test_rename_exchange_file_and_directory_across_parents(fs):
    p = mkdir(fs, b"p")
    q = mkdir(fs, b"q")
    f = mkfile(fs, b"f", b"file", p)
    d = mkdir(fs, b"d", q)
    assert err(fs.rename, CTX, p, b"f", q, b"missing", RENAME_EXCHANGE) == errno.ENOENT
    fs.rename(CTX, p, b"f", q, b"d", RENAME_EXCHANGE)
    assert fs.lookup(CTX, p, b"f").ino == d
    assert fs.lookup(CTX, q, b"d").ino == f
    assert (attr(fs, p).nlink, attr(fs, q).nlink) == (3, 2)
    assert fs.lookup(CTX, d, b"..").ino == p


def test_rename_directory_moves_dotdot_and_link_counts(fs):
    a = mkdir(fs, b"a")
    b = mkdir(fs, b"b")
    child = mkdir(fs, b"child", a)
    mkdir(fs, b"empty", b)
    fs.rename(CTX, a, b"child", b, b"empty", 0)  # directory over an empty directory
    assert (attr(fs, a).nlink, attr(fs, b).nlink) == (2, 3)
    assert fs.lookup(CTX, b, b"empty").ino == child
    assert fs.lookup(CTX, child, b"..").ino == b
    dh = fs.opendir(CTX, child, 0).fh
    assert [r.ino for r in fs.readdir(CTX, child, dh, 0, False)] == [child, b]


def test_rename_timestamps(fs):
    a = mkdir(fs, b"a")
    b = mkdir(fs, b"b")
    f = mkfile(fs, b"f", parent=a)
    for ino in (a, b, f):
        fs.setattr(CTX, ino, SetAttr(mtime_ns=1, ctime_ns=1), None)
    fs.rename(CTX, a, b"f", b, b"g", 0)
    assert attr(fs, f).ctime_ns > 1 and attr(fs, f).mtime_ns == 1
    for ino in (a, b):
        assert attr(fs, ino).mtime_ns > 1 and attr(fs, ino).ctime_ns > 1


# --- attributes ---------------------------------------------------------------------------------


def test_setattr_size_truncate_extend(fs):
    f = mkfile(fs, b"f", b"abcdefghij")
    fs.setattr(CTX, f, SetAttr(mtime_ns=1, ctime_ns=1), None)
    a = fs.setattr(CTX, f, SetAttr(size=4), None).attr
    assert (a.size, a.blocks) == (4, 1) and a.mtime_ns > 1 and a.ctime_ns > 1
    fs.setattr(CTX, f, SetAttr(size=1000), None)
    assert read_all(fs, f) == b"abcd" + bytes(996)
    assert attr(fs, f).blocks == 2
    assert err(fs.setattr, CTX, ROOT_ID, SetAttr(size=0), None) == errno.EISDIR
    fifo = fs.mknod(CTX, ROOT_ID, b"fifo", stat.S_IFIFO | 0o644, 0, 0).ino
    assert err(fs.setattr, CTX, fifo, SetAttr(size=0), None) == errno.EINVAL


def test_setattr_mode_owner_and_ctime(fs):
    f = mkfile(fs, b"f")
    fs.setattr(CTX, f, SetAttr(ctime_ns=1), None)
    a = fs.setattr(CTX, f, SetAttr(mode=stat.S_IFDIR | 0o4711, uid=5, gid=6), None).attr
    assert a.mode == stat.S_IFREG | 0o4711  # the file type never changes
    assert (a.uid, a.gid) == (5, 6) and a.ctime_ns > 1
    a = fs.setattr(CTX, f, SetAttr(), None).attr
    assert a.ctime_ns >= time.time_ns() - 10**9


def test_setattr_times_now_and_unchanged(fs):
    f = mkfile(fs, b"f")
    a = fs.setattr(CTX, f, SetAttr(atime_ns=123, mtime_ns=456_000_000_007), None).attr
    assert (a.atime_ns, a.mtime_ns) == (123, 456_000_000_007)
    a = fs.setattr(CTX, f, SetAttr(atime_ns=None, mtime_ns=TIME_NOW), None).attr
    assert a.atime_ns == 123
    assert a.mtime_ns >= time.time_ns() - 10**9
    a = fs.setattr(CTX, f, SetAttr(atime_ns=TIME_NOW, ctime_ns=99), None).attr
    assert a.atime_ns >= time.time_ns() - 10**9 and a.ctime_ns == 99


@pytest.mark.parametrize(
    "mode, expected",
    [
        (0o6755, 0o0755),  # both bits go when the group may execute
        (0o6745, 0o2745),  # S_ISGID without group-exec stays
        (0o4700, 0o0700),
        (0o0644, 0o0644),
    ],
)
def test_setattr_kill_suidgid(fs, mode, expected):
    f = mkfile(fs, b"f")
    fs.setattr(CTX, f, SetAttr(mode=mode), None)
    a = fs.setattr(CTX, f, SetAttr(kill_suidgid=True), None).attr
    assert stat.S_IMODE(a.mode) == expected


def test_write_updates_mtime_and_read_updates_atime_relatime(fs):
    f = mkfile(fs, b"f", b"data")
    fs.setattr(CTX, f, SetAttr(atime_ns=10, mtime_ns=5), None)
    fh = fs.open(CTX, f, os.O_RDWR).fh
    fs.read(CTX, f, fh, 0, 4)
    # relatime: atime (10) was not older than ctime (now), so it moves
    assert attr(fs, f).atime_ns > 10
    atime = attr(fs, f).atime_ns
    fs.read(CTX, f, fh, 0, 4)
    assert attr(fs, f).atime_ns == atime  # newer than mtime and ctime: left alone
    fs.setattr(CTX, f, SetAttr(mtime_ns=1), None)
    fs.write(CTX, f, fh, 0, b"x", 0)
    a = attr(fs, f)
    assert a.mtime_ns > 1 and a.mtime_ns == a.ctime_ns
    fs.release(CTX, f, fh, 0)


def test_statfs(fs):
    mkfile(fs, b"f", bytes(10_000))
    s = fs.statfs(CTX, ROOT_ID)
    assert s.namelen == 255 and s.bsize == 4096
    assert s.blocks - s.bfree == 3
    assert s.bavail <= s.bfree <= s.blocks
    assert s.files - s.ffree == fs.node_count() == 2


def test_access_returns_none(fs):
    assert fs.access(CTX, ROOT_ID, os.W_OK) is None


# --- xattrs -------------------------------------------------------------------------------------


def test_xattr_flags_and_errors(fs):
    f = mkfile(fs, b"f")
    assert fs.listxattr(CTX, f) == []
    assert err(fs.getxattr, CTX, f, b"user.a") == errno.ENODATA
    assert err(fs.setxattr, CTX, f, b"user.a", b"1", 2) == errno.ENODATA  # XATTR_REPLACE
    fs.setxattr(CTX, f, b"user.a", b"1", 1)  # XATTR_CREATE
    assert err(fs.setxattr, CTX, f, b"user.a", b"2", 1) == errno.EEXIST
    fs.setxattr(CTX, f, b"user.a", b"2", 2)
    fs.setxattr(CTX, f, b"user.b", b"", 0)
    fs.setxattr(CTX, f, b"user.b", b"3", 0)
    assert fs.getxattr(CTX, f, b"user.a") == b"2"
    assert sorted(fs.listxattr(CTX, f)) == [b"user.a", b"user.b"]
    fs.removexattr(CTX, f, b"user.a")
    assert err(fs.removexattr, CTX, f, b"user.a") == errno.ENODATA
    assert fs.listxattr(CTX, f) == [b"user.b"]
    fs.setattr(CTX, f, SetAttr(ctime_ns=1), None)
    fs.setxattr(CTX, f, b"user.c", b"", 0)
    assert attr(fs, f).ctime_ns > 1


# --- file data ----------------------------------------------------------------------------------


def test_write_read_offsets_and_sparse(fs):
    entry, opened = fs.create(CTX, ROOT_ID, b"f", stat.S_IFREG | 0o644, 0, os.O_RDWR)
    ino, fh = entry.ino, opened.fh
    assert fs.write(CTX, ino, fh, 0, b"head", 0) == 4
    big = (5 << 30) + 17  # past 4 GiB: holes must not cost memory
    assert fs.write(CTX, ino, fh, big, memoryview(b"tail"), 0) == 4
    assert attr(fs, ino).size == big + 4
    assert fs.read(CTX, ino, fh, 0, 8) == b"head" + bytes(4)
    assert fs.read(CTX, ino, fh, big - 2, 100) == b"\0\0tail"
    assert fs.read(CTX, ino, fh, big + 4, 100) == b""
    assert fs.write(CTX, ino, fh, 70_000, b"", 0) == 0
    fs.setattr(CTX, ino, SetAttr(size=3), None)
    fs.setattr(CTX, ino, SetAttr(size=200_000), None)
    assert fs.read(CTX, ino, fh, 0, 200_000) == b"hea" + bytes(199_997)


def test_unaligned_writes_across_chunks(fs):
    rnd = random.Random(3)
    entry, opened = fs.create(CTX, ROOT_ID, b"f", stat.S_IFREG | 0o644, 0, os.O_RDWR)
    model = bytearray()
    for _ in range(200):
        off = rnd.randrange(0, 300_000)
        data = rnd.randbytes(rnd.randrange(1, 70_000))
        fs.write(CTX, entry.ino, opened.fh, off, data, 0)
        if len(model) < off:
            model.extend(bytes(off - len(model)))
        model[off : off + len(data)] = data
        if rnd.random() < 0.1:
            size = rnd.randrange(0, len(model) + 1)
            fs.setattr(CTX, entry.ino, SetAttr(size=size), None)
            del model[size:]
    assert fs.read(CTX, entry.ino, opened.fh, 0, 1 << 30) == bytes(model)


def test_open_with_o_trunc(fs):
    f = mkfile(fs, b"f", b"0123456789")
    fs.setattr(CTX, f, SetAttr(mtime_ns=1), None)
    fh = fs.open(CTX, f, os.O_WRONLY | os.O_TRUNC).fh
    a = fs.getattr(CTX, f, fh).attr
    assert a.size == 0 and a.mtime_ns > 1
    fs.release(CTX, f, fh, 0)


def test_bad_handles(fs):
    f = mkfile(fs, b"f")
    g = mkfile(fs, b"g")
    fh = fs.open(CTX, f, os.O_RDWR).fh
    assert err(fs.read, CTX, f, 999, 0, 1) == errno.EBADF
    assert err(fs.read, CTX, g, fh, 0, 1) == errno.EBADF  # handle of another node
    assert err(fs.write, CTX, f, 999, 0, b"x", 0) == errno.EBADF
    assert err(fs.flush, CTX, f, 999, 0) == errno.EBADF
    assert err(fs.fsync, CTX, f, 999, False) == errno.EBADF
    assert err(fs.readdir, CTX, ROOT_ID, 999, 0, False) == errno.EBADF
    fs.flush(CTX, f, fh, 0)
    fs.fsync(CTX, f, fh, True)
    fs.release(CTX, f, fh, 0)
    assert err(fs.release, CTX, f, fh, 0) == errno.EBADF
    dh = fs.opendir(CTX, ROOT_ID, 0).fh
    assert err(fs.read, CTX, ROOT_ID, dh, 0, 1) == errno.EISDIR
    fs.fsyncdir(CTX, ROOT_ID, dh, False)
    fs.releasedir(CTX, ROOT_ID, dh)
    assert err(fs.releasedir, CTX, ROOT_ID, dh) == errno.EBADF
    assert err(fs.opendir, CTX, f, 0) == errno.ENOTDIR
    assert err(fs.open, CTX, ROOT_ID, os.O_RDONLY) == errno.EISDIR


@pytest.fixture
def opened(fs):
    entry, op = fs.create(CTX, ROOT_ID, b"f", stat.S_IFREG | 0o644, 0, os.O_RDWR)
    fs.write(CTX, entry.ino, op.fh, 0, b"0123456789", 0)
    return entry.ino, op.fh


def test_fallocate_modes(fs, opened):
    ino, fh = opened
    fs.fallocate(CTX, ino, fh, 5, 20, 0)  # grows
    assert attr(fs, ino).size == 25
    fs.fallocate(CTX, ino, fh, 0, 100, 1)  # KEEP_SIZE
    assert attr(fs, ino).size == 25
    fs.fallocate(CTX, ino, fh, 2, 3, 1 | 2)  # PUNCH_HOLE | KEEP_SIZE
    assert fs.read(CTX, ino, fh, 0, 10) == b"01\0\0\0" + b"56789"
    fs.fallocate(CTX, ino, fh, 20, 100, 1 | 2)  # a punch never grows the file
    assert attr(fs, ino).size == 25
    fs.fallocate(CTX, ino, fh, 6, 2, 16)  # ZERO_RANGE
    assert fs.read(CTX, ino, fh, 5, 5) == b"5\0\0" + b"89"
    fs.fallocate(CTX, ino, fh, 30, 10, 16)  # ZERO_RANGE may grow
    assert attr(fs, ino).size == 40
    fs.fallocate(CTX, ino, fh, 1, 100, 16 | 1)  # ... unless KEEP_SIZE
    assert attr(fs, ino).size == 40
    assert fs.read(CTX, ino, fh, 0, 100) == b"0" + bytes(39)
    assert err(fs.fallocate, CTX, ino, fh, 0, 10, 2) == errno.EOPNOTSUPP  # punch without KEEP_SIZE
    assert err(fs.fallocate, CTX, ino, fh, 0, 10, 8) == errno.EOPNOTSUPP  # COLLAPSE_RANGE
    assert err(fs.fallocate, CTX, ino, fh, 0, 10, 0x20) == errno.EOPNOTSUPP  # INSERT_RANGE
    assert err(fs.fallocate, CTX, ino, fh, 0, 0, 0) == errno.EINVAL
    assert attr(fs, ino).size == 40


def test_lseek_data_and_hole(fs, opened):
    ino, fh = opened
    assert fs.lseek(CTX, ino, fh, 0, 3) == 0
    assert fs.lseek(CTX, ino, fh, 7, 3) == 7
    assert fs.lseek(CTX, ino, fh, 3, 4) == 10
    assert err(fs.lseek, CTX, ino, fh, 10, 3) == errno.ENXIO
    assert err(fs.lseek, CTX, ino, fh, 10, 4) == errno.ENXIO
    assert err(fs.lseek, CTX, ino, fh, 0, 0) == errno.EINVAL


def test_copy_file_range(fs, opened):
    ino, fh = opened
    entry, op = fs.create(CTX, ROOT_ID, b"g", stat.S_IFREG | 0o644, 0, os.O_RDWR)
    assert fs.copy_file_range(CTX, ino, fh, 2, entry.ino, op.fh, 5, 4, 0) == 4
    assert fs.read(CTX, entry.ino, op.fh, 0, 100) == bytes(5) + b"2345"
    assert fs.copy_file_range(CTX, ino, fh, 8, entry.ino, op.fh, 0, 100, 0) == 2
    assert fs.read(CTX, entry.ino, op.fh, 0, 3) == b"89\0"
    assert fs.copy_file_range(CTX, ino, fh, 10, entry.ino, op.fh, 0, 100, 0) == 0
    assert fs.copy_file_range(CTX, ino, fh, 50, entry.ino, op.fh, 0, 100, 0) == 0
    # within one file, to a range that does not overlap
    assert fs.copy_file_range(CTX, ino, fh, 0, ino, fh, 20, 3, 0) == 3
    assert fs.read(CTX, ino, fh, 18, 10) == bytes(2) + b"012"
    assert err(fs.copy_file_range, CTX, ino, fh, 0, ino, fh, 2, 5, 0) == errno.EINVAL
    assert err(fs.copy_file_range, CTX, ino, fh, 0, entry.ino, op.fh, 0, 1, 1) == errno.EINVAL


# --- readdir ------------------------------------------------------------------------------------


def test_readdir_records_and_cookies(fs):
    d = mkdir(fs, b"d")
    f = mkfile(fs, b"f", parent=d)
    sub = mkdir(fs, b"sub", d)
    lnk = fs.symlink(CTX, d, b"l", b"t").ino
    fh = fs.opendir(CTX, d, 0).fh
    recs = list(fs.readdir(CTX, d, fh, 0, False))
    assert [(r.name, r.ino, r.dtype, r.offset) for r in recs] == [
        (b".", d, 4, 1),
        (b"..", ROOT_ID, 4, 2),
        (b"f", f, 8, 3),
        (b"sub", sub, 4, 4),
        (b"l", lnk, 10, 5),
    ]
    assert all(r.entry is None for r in recs)
    # resuming after a record's offset continues with the next one
    assert [r.name for r in fs.readdir(CTX, d, fh, 1, False)] == [b"..", b"f", b"sub", b"l"]
    assert [r.name for r in fs.readdir(CTX, d, fh, 4, False)] == [b"l"]
    assert list(fs.readdir(CTX, d, fh, 5, False)) == []


def test_readdirplus_entries(fs):
    f = mkfile(fs, b"f", b"abc")
    fh = fs.opendir(CTX, ROOT_ID, 0).fh
    dot, dotdot, rec = fs.readdir(CTX, ROOT_ID, fh, 0, True)
    assert dot.entry is None and dotdot.entry is None
    assert rec.entry.ino == f and rec.entry.attr.size == 3 and rec.entry.attr.ino == f


def test_readdirplus_hands_out_a_reference(fs):
    f = mkfile(fs, b"f")
    fs.forget(f)
    fh = fs.opendir(CTX, ROOT_ID, 0).fh
    assert [r.ino for r in fs.readdir(CTX, ROOT_ID, fh, 2, True)] == [f]
    fs.unlink(CTX, ROOT_ID, b"f")
    assert fs.node_count() == 2  # the kernel may still hold it from the listing
    fs.forget(f)
    assert fs.node_count() == 1


def test_readdir_cookies_stable_across_unlink_and_insert(fs):
    for i in range(10):
        mkfile(fs, b"n%d" % i)
    fh = fs.opendir(CTX, ROOT_ID, 0).fh
    first = list(fs.readdir(CTX, ROOT_ID, fh, 0, False))[:6]  # ., .., n0..n3
    cookie = first[-1].offset
    fs.unlink(CTX, ROOT_ID, b"n2")  # already returned
    fs.unlink(CTX, ROOT_ID, b"n3")  # the record the cookie names
    fs.unlink(CTX, ROOT_ID, b"n7")  # not yet returned
    mkfile(fs, b"new")
    fs.rename(CTX, ROOT_ID, b"n8", ROOT_ID, b"n1", 0)  # replaces a returned name in place
    rest = [r.name for r in fs.readdir(CTX, ROOT_ID, fh, cookie, False)]
    assert rest == [b"n4", b"n5", b"n6", b"n9", b"new"]
    seen = [r.name for r in first] + rest
    assert len(seen) == len(set(seen))


def test_readdir_generator_does_not_hold_the_lock(fs):
    for i in range(5):
        mkfile(fs, b"n%d" % i)
    fh = fs.opendir(CTX, ROOT_ID, 0).fh
    it = iter(fs.readdir(CTX, ROOT_ID, fh, 0, True))
    assert next(it).name == b"."
    done = []
    t = threading.Thread(target=lambda: done.append(mkfile(fs, b"other")))
    t.start()
    t.join(5)
    assert done
    rest = list(it)
    assert all(isinstance(r, DirEntry) for r in rest) and len(rest) == 6


def test_readdirplus_skips_entries_freed_meanwhile(fs):
    f = mkfile(fs, b"f")
    mkfile(fs, b"g")
    fh = fs.opendir(CTX, ROOT_ID, 0).fh
    it = iter(fs.readdir(CTX, ROOT_ID, fh, 2, True))
    fs.unlink(CTX, ROOT_ID, b"f")
    fs.forget(f)
    assert [r.name for r in it] == [b"g"]


# --- concurrency --------------------------------------------------------------------------------


def test_threads_writing_different_files(fs):
    errors = []
    payload = {i: bytes([i]) * 100_000 for i in range(8)}

    def work(i: int) -> None:
        try:
            ctx = Context(uid=i, gid=i)
            d = fs.mkdir(ctx, ROOT_ID, b"d%d" % i, 0o755, 0).ino
            entry, opened = fs.create(ctx, d, b"f", stat.S_IFREG | 0o644, 0, os.O_RDWR)
            for off in range(0, len(payload[i]), 1000):
                fs.write(ctx, entry.ino, opened.fh, off, payload[i][off : off + 1000], 0)
                fs.getattr(ctx, ROOT_ID, None)
            assert fs.read(ctx, entry.ino, opened.fh, 0, 1 << 20) == payload[i]
            fs.release(ctx, entry.ino, opened.fh, 0)
            fs.rename(ctx, d, b"f", ROOT_ID, b"f%d" % i, 0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert attr(fs, ROOT_ID).nlink == 2 + 8
    for i in range(8):
        assert read_all(fs, fs.lookup(CTX, ROOT_ID, b"f%d" % i).ino) == payload[i]
    assert fs.node_count() == 1 + 16
