"""Directories: listing, nesting, link counts, large directories, readdir under change."""

from __future__ import annotations

import collections
import os
import stat


def test_new_root_is_empty_directory(root):
    assert root.is_dir()
    assert os.listdir(root) == []
    assert list(os.scandir(root)) == []


def test_listdir_contents(root):
    (root / "a").write_bytes(b"")
    (root / "b").mkdir()
    os.symlink("a", root / "c")
    os.symlink("nowhere", root / "dangling")
    os.mkfifo(root / "fifo")
    (root / "b" / "inner").write_bytes(b"")
    assert sorted(os.listdir(root)) == ["a", "b", "c", "dangling", "fifo"]
    assert os.listdir(root / "b") == ["inner"]


def test_scandir_entry_types_and_inodes(root):
    (root / "file").write_bytes(b"abc")
    (root / "dir").mkdir()
    os.symlink("file", root / "link")
    os.symlink("dir", root / "dirlink")
    os.mkfifo(root / "fifo")
    entries = {e.name: e for e in os.scandir(root)}
    assert set(entries) == {"file", "dir", "link", "dirlink", "fifo"}

    e = entries["file"]
    assert e.is_file(follow_symlinks=False) and not e.is_dir() and not e.is_symlink()
    e = entries["dir"]
    assert e.is_dir(follow_symlinks=False) and not e.is_file() and not e.is_symlink()
    e = entries["link"]
    assert e.is_symlink() and not e.is_file(follow_symlinks=False) and e.is_file()
    e = entries["dirlink"]
    assert e.is_symlink() and not e.is_dir(follow_symlinks=False) and e.is_dir()
    e = entries["fifo"]
    assert not e.is_file() and not e.is_dir() and not e.is_symlink()
    assert stat.S_ISFIFO(e.stat(follow_symlinks=False).st_mode)

    # d_ino reported by readdir is the inode number that lstat reports
    for name, e in entries.items():
        assert e.inode() == os.lstat(root / name).st_ino, name
    assert entries["file"].stat().st_size == 3


def test_mkdir_p_six_levels(root):
    deep = root.joinpath("l1", "l2", "l3", "l4", "l5", "l6")
    os.makedirs(deep)
    assert deep.is_dir()
    (deep / "leaf").write_bytes(b"deep")
    assert (root / "l1/l2/l3/l4/l5/l6/leaf").read_bytes() == b"deep"
    p = root
    for level in ["l1", "l2", "l3", "l4", "l5", "l6"]:
        assert os.listdir(p) == [level]
        p = p / level
    assert os.listdir(p) == ["leaf"]
    # exist_ok does not disturb anything
    os.makedirs(deep, exist_ok=True)
    assert (deep / "leaf").read_bytes() == b"deep"
    # walking back up with .. reaches root
    assert os.stat(os.path.join(deep, *[".."] * 6)).st_ino == os.stat(root).st_ino


def test_directory_nlink_counts_subdirectories(root):
    d = root / "d"
    d.mkdir()
    assert os.stat(d).st_nlink == 2
    for i in range(5):
        (d / f"sub{i}").mkdir()
        assert os.stat(d).st_nlink == 2 + i + 1
    # files do not count
    (d / "file").write_bytes(b"")
    os.symlink("sub0", d / "link")
    assert os.stat(d).st_nlink == 7
    os.rmdir(d / "sub0")
    assert os.stat(d).st_nlink == 6
    for i in range(1, 5):
        os.rmdir(d / f"sub{i}")
    assert os.stat(d).st_nlink == 2
    assert os.stat(d / "file").st_nlink == 1


def test_directory_nlink_updates_on_cross_directory_move(root):
    a = root / "a"
    b = root / "b"
    a.mkdir()
    b.mkdir()
    (a / "child").mkdir()
    assert os.stat(a).st_nlink == 3
    assert os.stat(b).st_nlink == 2
    os.rename(a / "child", b / "child")
    assert os.stat(a).st_nlink == 2
    assert os.stat(b).st_nlink == 3
    assert os.stat(b / "child" / "..").st_ino == os.stat(b).st_ino


def test_thousand_entries_listed_exactly_once(root):
    d = root / "big"
    d.mkdir()
    names = {f"entry-{i:04d}-" + "x" * (i % 60) for i in range(1000)}
    for n in names:
        fd = os.open(d / n, os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)

    listed = os.listdir(d)
    counts = collections.Counter(listed)
    assert [n for n, c in counts.items() if c > 1] == []
    assert set(listed) == names
    assert len(listed) == 1000

    scanned = [e.name for e in os.scandir(d)]
    assert collections.Counter(scanned) == collections.Counter(names)
    assert all(e.is_file() for e in os.scandir(d))


def test_listing_while_deleting_returns_no_name_twice(root):
    d = root / "churn"
    d.mkdir()
    # long names so the listing needs several readdir batches
    names = [f"{i:04d}-" + "y" * 100 for i in range(600)]
    for n in names:
        fd = os.open(d / n, os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)
    to_delete = set(names[1::2])
    keep = set(names[0::2])
    pending = sorted(to_delete, reverse=True)  # delete from the far end first

    seen = []
    with os.scandir(d) as it:
        for entry in it:
            seen.append(entry.name)
            assert len(seen) <= len(names), "listing returned more names than ever existed"
            # remove one not-yet-deleted victim per entry returned, plus the
            # current entry itself when it is a victim
            if entry.name in to_delete and entry.name in pending:
                pending.remove(entry.name)
                os.unlink(entry.path)
            if pending:
                victim = pending.pop()
                os.unlink(d / victim)

    counts = collections.Counter(seen)
    assert [n for n, c in counts.items() if c > 1] == []
    assert set(seen) <= set(names)
    # entries that were never removed must all be returned
    assert keep <= set(seen)
    assert sorted(os.listdir(d)) == sorted(keep)


def test_listing_while_creating_returns_no_name_twice(root):
    d = root / "grow"
    d.mkdir()
    names = [f"orig-{i:04d}-" + "z" * 80 for i in range(300)]
    for n in names:
        fd = os.open(d / n, os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)
    # POSIX leaves it open whether entries created during the listing are
    # returned, so the number of creations is bounded (one per original
    # entry) and the listing must end after at most 600 names.
    seen = []
    created = 0
    with os.scandir(d) as it:
        for entry in it:
            seen.append(entry.name)
            assert len(seen) <= 600, "listing returned more names than ever existed"
            if created < len(names):
                fd = os.open(d / f"new-{created:04d}", os.O_CREAT | os.O_WRONLY, 0o644)
                os.close(fd)
                created += 1
    counts = collections.Counter(seen)
    assert [n for n, c in counts.items() if c > 1] == []
    # every entry present for the whole listing is returned
    assert set(names) <= set(seen)
    assert set(seen) <= set(names) | {f"new-{k:04d}" for k in range(created)}
    assert len(os.listdir(d)) == 300 + created


def test_rmdir_after_emptying_large_directory(root):
    d = root / "d"
    d.mkdir()
    for i in range(200):
        (d / f"f{i}").write_bytes(b"")
    for e in list(os.scandir(d)):
        os.unlink(e.path)
    assert os.listdir(d) == []
    os.rmdir(d)
    assert os.listdir(root) == []


def test_readdir_through_open_fd_after_rmdir(root):
    d = root / "d"
    d.mkdir()
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rmdir(d)
        st = os.fstat(fd)
        assert stat.S_ISDIR(st.st_mode)
        assert st.st_nlink == 0
        # the kernel reports ENOENT from getdents, which glibc turns into EOF
        assert os.listdir(fd) == []
    finally:
        os.close(fd)
