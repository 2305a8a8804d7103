"""Small files read ahead: reading a directory's files one after another costs a round trip per
many files, and a content fetched ahead is never served once the file changed."""

import os

from waiting import wait_until

from eventkit import drop_kernel_caches, resident_bytes, stats, wait_settled


def _files(host, dirs=3, files=50):
    for d in range(dirs):
        sub = host / f"dir{d}"
        sub.mkdir()
        for i in range(files):
            (sub / f"mod{i:02}.js").write_bytes(f"// {d}/{i}\n".encode() * (i + 1))


def _first_read_of_a_cold_directory(host, mnt, files):
    """A directory of ``files`` small files, listed through the mount (the kernel learns every
    file) with nothing cached, then its first file read: the others are read ahead."""
    _files(host, dirs=1, files=files)
    wait_settled(host, mnt)
    drop_kernel_caches()
    sub = mnt / "dir0"
    names = sorted(os.listdir(sub))
    assert (sub / names[0]).read_bytes() == (host / "dir0" / names[0]).read_bytes()
    return sub, names


def _read_all(root):
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in sorted(names):
            with open(os.path.join(dirpath, name), "rb") as f:
                out[os.path.relpath(os.path.join(dirpath, name), root)] = f.read()
    return out


def test_reading_small_files_costs_a_round_trip_per_many_files(watched_share):
    host, mnt = watched_share
    _files(host)
    wait_settled(host, mnt)
    drop_kernel_caches()
    stats(mnt, reset=True)
    assert _read_all(mnt) == _read_all(host)
    rpc = stats(mnt)["rpc"]
    reads = sum(rpc.get(name, {"count": 0})["count"] for name in ("Read", "ReadFiles"))
    assert reads <= 6, rpc  # 150 files in 3 directories


def test_a_file_changed_after_it_was_read_ahead_is_read_new(watched_share):
    host, mnt = watched_share
    sub, names = _first_read_of_a_cold_directory(host, mnt, files=5)
    old = (host / "dir0" / names[1]).read_bytes()
    new = bytes(reversed(old))  # same size
    (host / "dir0" / names[1]).write_bytes(new)
    (sub / names[2]).write_bytes(b"written through the mount")
    wait_settled(host, mnt)
    assert (sub / names[1]).read_bytes() == new
    assert (sub / names[2]).read_bytes() == b"written through the mount"
    assert (sub / names[3]).read_bytes() == (host / "dir0" / names[3]).read_bytes()


def test_files_read_ahead_are_in_the_page_cache_before_they_are_read(watched_share):
    host, mnt = watched_share
    sub, names = _first_read_of_a_cold_directory(host, mnt, files=40)
    # The contents are pushed from a thread of their own: wait until they are in.
    wait_until(
        lambda: all(resident_bytes(sub / name) > 0 for name in names[1:]),
        what="the pages of the files read ahead are in the page cache",
    )
    stats(mnt, reset=True)
    for name in names[1:]:
        assert (sub / name).read_bytes() == (host / "dir0" / name).read_bytes()
    fuse = stats(mnt)["fuse"]
    assert "READ" not in fuse, fuse
