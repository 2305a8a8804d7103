"""The overlay lives in the host files themselves: it outlasts a remount and a server restart,
follows host-side renames and copies that keep xattrs; a copy without xattrs shows the host's
own owner and mode (what README says of a host-side `cp`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess

import pytest
from userkit import ROOT, Site, Who
from waiting import wait_until

from mounting import bridgefs_server, remote_mount

A = Who(1000, 1000)


@pytest.fixture
def place(world, request):
    d = world / f"survival-{request.node.name[:40]}"
    (d / "host").mkdir(parents=True)
    return d


@contextlib.contextmanager
def mounted(place, ro=""):
    with (
        bridgefs_server({"share": f"{place / 'host'}{ro}"}, f"unix:{place / 'server.sock'}") as (
            address,
            _server,
        ),
        remote_mount(address, "share", place / "mnt"),
    ):
        yield Site("overlay", place / "mnt", place / "host", 0)


def _owners(site):
    out = {}
    for dirpath, dirnames, filenames in os.walk(site.root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, site.root)] = (st.st_uid, st.st_gid, oct(st.st_mode))
    return out


def _make(site):
    site.act(ROOT, [["mkdir", "a", 0o755], ["chown", "a", 1000, 1000]])
    site.act(
        A,
        [
            ["create", "a/f", 0o644],
            ["chmod", "a/f", 0o4750],
            ["mkdir", "a/d", 0o700],
            ["symlink", "f", "a/l"],
            ["mkfifo", "a/p", 0o600],
            ["symlink", "f", "a/moving"],
            ["rename", "a/moving", "a/d/moved"],
        ],
    )


def test_remount_and_server_restart_keep_owners(place):
    with mounted(place) as site:
        _make(site)
        want = _owners(site)
    assert want["a/f"] == (1000, 1000, oct(stat.S_IFREG | 0o4750))
    assert want["a/l"][:2] == want["a/d/moved"][:2] == (1000, 1000)
    assert want["a/p"] == (1000, 1000, oct(stat.S_IFIFO | 0o600))
    with mounted(place) as site:  # a new server process and a new mount
        assert _owners(site) == want


def test_host_renames_and_copies(place):
    with mounted(place) as site:
        _make(site)
        host, mnt = site.host, site.root
        os.rename(host / "a" / "f", host / "a" / "renamed")
        wait_until(lambda: (mnt / "a" / "renamed").exists(), what="the host's rename shows")
        st = os.lstat(mnt / "a" / "renamed")
        assert (st.st_uid, st.st_gid, st.st_mode) == (1000, 1000, stat.S_IFREG | 0o4750)
        shutil.copy2(host / "a" / "renamed", host / "a" / "kept")  # copies xattrs too
        subprocess.run(["cp", host / "a" / "renamed", host / "a" / "plain"], check=True)
        wait_until(lambda: (mnt / "a" / "plain").exists(), what="the host's copies show")
        kept, plain = os.lstat(mnt / "a" / "kept"), os.lstat(mnt / "a" / "plain")
        assert (kept.st_uid, kept.st_gid, kept.st_mode) == (1000, 1000, stat.S_IFREG | 0o4750)
        # Without the xattr: the host file's own owner (the server's user) and its mode.
        on_host = os.lstat(host / "a" / "plain")
        assert (plain.st_uid, plain.st_gid, plain.st_mode) == (
            on_host.st_uid,
            on_host.st_gid,
            on_host.st_mode,
        )


def _xattrs(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                out[path] = {n: os.getxattr(path, n) for n in os.listxattr(path)}
    return out


def test_a_read_only_share_shows_owners_and_writes_none(place):
    with mounted(place) as site:
        _make(site)
        want = _owners(site)
    (place / "host" / "from-the-host").write_bytes(b"")
    before = _xattrs(place / "host")
    with mounted(place, ":ro") as site:
        got = _owners(site)
        assert got.pop("from-the-host") == (0, 0, oct(stat.S_IFREG | 0o644))
        assert got == want
        assert site.act(A, [["chmod", "a/f", 0o600]]) == [["err", "EROFS"]]
    assert _xattrs(place / "host") == before
