"""Listings fetched ahead: a walk of a tree costs a round trip per many directories, and a
listing fetched ahead is never served once the directory changed on the host."""

import errno
import os
import subprocess

import pytest
from waiting import wait_until

from eventkit import drop_kernel_caches, stats, wait_settled


def _host_tree(host, top=10, sub=10, files=5):
    for a in range(top):
        for b in range(sub):
            d = host / f"d{a}" / f"e{b}"
            d.mkdir(parents=True)
            for i in range(files):
                (d / f"f{i}.txt").write_text("x" * i)


def test_a_walk_lists_many_directories_per_round_trip(watched_share):
    host, mnt = watched_share
    _host_tree(host)  # 111 directories, 500 files
    wait_settled(host, mnt)
    drop_kernel_caches(2)  # the kernel forgets every name and listing
    stats(mnt, reset=True)
    walked = subprocess.run(
        ["find", str(mnt), "-printf", "%P %s\n"], capture_output=True, text=True, check=True
    ).stdout
    expected = subprocess.run(
        ["find", str(host), "-printf", "%P %s\n"], capture_output=True, text=True, check=True
    ).stdout
    assert sorted(walked.split("\n")) == sorted(expected.split("\n"))
    rpc = stats(mnt)["rpc"]
    assert rpc["ListDir"]["count"] <= 5, rpc  # 111 directories


def test_a_walk_finds_the_listings_past_the_first_ones_fetched_already(watched_share):
    host, mnt = watched_share
    _host_tree(host, top=40, sub=10, files=6)  # 3,241 records: more than one listing brings
    wait_settled(host, mnt)
    drop_kernel_caches(2)
    stats(mnt, reset=True)
    top = sorted(os.listdir(mnt))  # brings a first part of the tree along, breadth first
    assert len(top) == 40
    assert stats(mnt)["rpc"]["ListDir"]["count"] == 1
    # The walk goes on into what came along: the rest is listed before it gets there, in the
    # order it will get there, without another listing asked for by the kernel.
    assert len(os.listdir(mnt / top[0])) == 10
    wait_until(lambda: stats(mnt)["rpc"]["ListDir"]["count"] > 1, what="listings fetched ahead")
    walked = subprocess.run(
        ["find", str(mnt), "-printf", "%P %s\n"], capture_output=True, text=True, check=True
    ).stdout
    expected = subprocess.run(
        ["find", str(host), "-printf", "%P %s\n"], capture_output=True, text=True, check=True
    ).stdout
    assert sorted(walked.split("\n")) == sorted(expected.split("\n"))
    assert stats(mnt)["fuse"].get("LOOKUP", {}).get("count", 0) <= 1  # the walk's root


def test_a_listing_fetched_ahead_is_not_served_after_a_host_change(watched_share):
    host, mnt = watched_share
    _host_tree(host, top=2, sub=2, files=3)
    wait_settled(host, mnt)
    drop_kernel_caches(2)  # the kernel forgets every name and listing
    assert sorted(os.listdir(mnt)) == ["d0", "d1"]  # brings d0/, d0/e0/... along
    (host / "d0" / "e0" / "new.txt").write_text("new")
    (host / "d0" / "e1" / "f0.txt").unlink()
    (host / "d1" / "e0" / "f2.txt").write_text("longer than before")
    os.rename(host / "d1" / "e1", host / "d1" / "moved")
    wait_settled(host, mnt)
    assert sorted(os.listdir(mnt / "d0" / "e1")) == ["f1.txt", "f2.txt"]
    assert sorted(os.listdir(mnt / "d0" / "e0")) == ["f0.txt", "f1.txt", "f2.txt", "new.txt"]
    assert sorted(os.listdir(mnt / "d1")) == ["e0", "moved"]
    assert os.stat(mnt / "d1" / "e0" / "f2.txt").st_size == len("longer than before")
    sizes = {e.name: e.stat().st_size for e in os.scandir(mnt / "d1" / "e0")}
    assert sizes == {"f0.txt": 0, "f1.txt": 1, "f2.txt": len("longer than before")}


def test_a_listing_fetched_ahead_is_not_served_after_a_change_through_the_mount(watched_share):
    host, mnt = watched_share
    _host_tree(host, top=2, sub=2, files=3)
    wait_settled(host, mnt)
    drop_kernel_caches(2)  # the kernel forgets every name and listing
    assert sorted(os.listdir(mnt)) == ["d0", "d1"]
    sub = mnt / "d0" / "e0"
    os.stat(sub)  # the kernel learns the directory, not its listing
    (sub / "made-here").write_text("x")
    os.unlink(sub / "f1.txt")
    assert sorted(os.listdir(sub)) == ["f0.txt", "f2.txt", "made-here"]


def test_lookups_below_a_listed_directory_are_answered_from_the_listing(watched_share):
    host, mnt = watched_share
    _host_tree(host, top=2, sub=2, files=3)
    wait_settled(host, mnt)
    drop_kernel_caches(2)  # the kernel forgets every name and listing
    assert sorted(os.listdir(mnt)) == ["d0", "d1"]  # brings the listings below along
    stats(mnt, reset=True)
    assert os.stat(mnt / "d0" / "e1" / "f2.txt").st_size == 2
    assert not os.path.exists(mnt / "d1" / "e0" / "missing.js")  # as an autoloader probes
    rpc = stats(mnt)["rpc"]
    assert "Lookup" not in rpc, rpc
    with pytest.raises(OSError) as too_long:  # the server's to refuse
        os.stat(mnt / "d1" / "e0" / ("n" * 256))
    assert too_long.value.errno == errno.ENAMETOOLONG
    # a name that appears on the host afterwards is found, though the listing lacked it
    (host / "d1" / "e1" / "late.js").write_text("x")
    wait_settled(host, mnt)
    assert os.path.exists(mnt / "d1" / "e1" / "late.js")
    (mnt / "d0" / "e0" / "made-here.js").write_text("y")  # and one made through the mount
    assert (mnt / "d0" / "e0" / "made-here.js").read_text() == "y"


def test_filling_a_directory_made_here_costs_no_lookup(watched_share):
    host, mnt = watched_share
    made = mnt / "out"
    os.mkdir(made)
    stats(mnt, reset=True)
    for i in range(200):
        (made / f"o{i:03}.o").write_bytes(b"x")
    os.rename(made / "o000.o", made / "renamed.o")
    os.unlink(made / "o001.o")
    assert not os.path.exists(made / "o001.o") and not os.path.exists(made / "o000.o")
    assert os.path.exists(made / "renamed.o")
    rpc = stats(mnt)["rpc"]
    assert "Lookup" not in rpc, rpc
    assert len(os.listdir(made)) == 199
    # once a host program changes the directory, its names are asked for again
    (host / "out" / "from-host.o").write_bytes(b"h")
    wait_settled(host, mnt)
    assert os.path.exists(made / "from-host.o")
