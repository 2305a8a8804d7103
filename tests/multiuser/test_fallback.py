"""A share on a filesystem that refuses user xattrs (ramfs here, vfat and some network
filesystems on real hosts): the server says so, and the documented mapping applies."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess

import grpc
import pytest
from userkit import Site, Who

from bridgefs.rpc import PROTOCOL_VERSION, SESSION_KEY, pb, pb_grpc
from mounting import bridgefs_server, remote_mount

A = Who(1000, 1000)


def _errno(fn, *args):
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno
    return 0


@pytest.fixture
def ramfs(world, request):
    d = world / f"ramfs-{request.node.name[:40]}"
    d.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(d)], check=True)
    try:
        d.chmod(0o755)
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


@contextlib.contextmanager
def mounted(share, place, options=()):
    with (
        bridgefs_server(
            {"share": str(share)}, f"unix:{place / 'server.sock'}", options=list(options)
        ) as (address, _server),
        remote_mount(address, "share", place / "mnt"),
    ):
        yield address, Site("mapped", place / "mnt", share, 0)


def _ownership_of(address):
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.FilesStub(channel)
        hello = stub.Handshake(
            pb.HandshakeRequest(protocol_version=PROTOCOL_VERSION, share="share"), timeout=30
        )
        stub.Goodbye(pb.Empty(), metadata=((SESSION_KEY, hello.session),), timeout=30)
        return hello.ownership


def test_mapping_where_user_xattrs_are_refused(ramfs, world, request):
    place = world / f"mapped-{request.node.name[:40]}"
    place.mkdir()
    with mounted(ramfs, place) as (address, site):
        assert _ownership_of(address) == "mapped"
        f = site.root / "f"
        f.write_bytes(b"x")
        os.chmod(f, 0o640)
        assert os.lstat(f).st_mode == os.lstat(ramfs / "f").st_mode == stat.S_IFREG | 0o640
        os.chmod(f, 0o4755)  # kept as far as the host file can: without the setuid bit
        assert os.lstat(f).st_mode == os.lstat(ramfs / "f").st_mode == stat.S_IFREG | 0o755
        assert _errno(os.chown, f, 1000, 1000) == errno.EPERM
        os.chown(f, 0, 0)  # no change is no refusal
        assert _errno(os.mkfifo, site.root / "p") == errno.EPERM
        os.symlink("f", site.root / "l")
        assert _errno(os.lchown, site.root / "l", 1000, -1) == errno.EPERM
        # What a user makes shows the host's owner: the mapping keeps no other.
        os.chmod(site.root, 0o777)
        assert site.act(A, [["create", "mine", 0o644], ["stat", "mine"]])[1] == [
            "ok",
            [0, 0, oct(stat.S_IFREG | 0o644)],
        ]


def test_default_owner_for_files_without_an_overlay(world, request):
    place = world / f"default-{request.node.name[:40]}"
    (place / "host").mkdir(parents=True)
    (place / "host" / "old").write_bytes(b"made on the host")
    with mounted(place / "host", place, ["--default-owner", "1000:1000"]) as (address, site):
        assert _ownership_of(address) == "overlay"
        st = os.lstat(site.root / "old")
        assert (st.st_uid, st.st_gid) == (1000, 1000)
        assert site.act(A, [["write", "old", "+"], ["chmod", "old", 0o600]]) == [
            ["ok", 1],
            ["ok", None],
        ]
        assert os.lstat(place / "host" / "old").st_uid == 0  # the host file stays the server's
