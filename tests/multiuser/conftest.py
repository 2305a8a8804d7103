"""Fixtures for the multi-user suite: the same operations, made by processes of several uids and
gids, on a native directory and through mounts whose servers keep ownership in different ways.

Each test takes ``site`` (a mount: ``overlay``, a root server's default; ``nonroot``, a server
running as uid 1000 on a share that user owns, the normal host case; ``host``, a root server
with ``--ownership host``) and ``native`` (a directory of the same ext4/tmpfs as the test's), runs
one scenario on both and compares every result, errno included.  Processes of other users are
made with ``setpriv --reuid U --regid G`` and run tests/multiuser/actor.py, which imports nothing
of the project, so any user can run it.

Everything lives below a world-searchable directory in /tmp (pytest's own are 0700, which other
users could not enter), removed at the end with every mount unmounted first.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import pytest
from userkit import Site, Who

from mounting import bridgefs_server, remote_mount, require_fuse

SERVER_USER = 1000  # the nonroot server's uid and gid
MOUNT_KINDS = ["overlay", "nonroot", "host"]


@pytest.fixture(scope="session")
def world() -> Iterator[pathlib.Path]:
    require_fuse()
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to act as other users")
    base = pathlib.Path(tempfile.mkdtemp(prefix="bridgefs-multiuser-", dir="/tmp"))
    try:
        base.chmod(0o755)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _serve(world: pathlib.Path, kind: str) -> Iterator[tuple[pathlib.Path, pathlib.Path, int]]:
    place = world / kind
    host = place / "host"
    host.mkdir(parents=True)
    wrap, options, uid = None, [], 0
    if kind == "nonroot":
        for d in (place, host):
            os.chown(d, SERVER_USER, SERVER_USER)
        wrap, uid = Who(SERVER_USER, SERVER_USER).setpriv(), SERVER_USER
    elif kind == "host":
        options = ["--ownership", "host"]
    with (
        bridgefs_server(
            {"share": str(host)}, f"unix:{place / 'server.sock'}", wrap=wrap, options=options
        ) as (address, _server),
        remote_mount(address, "share", place / "mnt"),
    ):
        yield place / "mnt", host, uid


@pytest.fixture(scope="session")
def overlay_mount(world):
    yield from _serve(world, "overlay")


@pytest.fixture(scope="session")
def nonroot_mount(world):
    yield from _serve(world, "nonroot")


@pytest.fixture(scope="session")
def host_mount(world):
    yield from _serve(world, "host")


def _fresh(parent: pathlib.Path) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    (parent / name).mkdir()
    (parent / name).chmod(0o755)
    return name


@pytest.fixture(params=MOUNT_KINDS)
def site(request) -> Site:
    """An empty directory through a mount of each kind."""
    mnt, host, uid = request.getfixturevalue(f"{request.param}_mount")
    name = _fresh(mnt)
    return Site(request.param, mnt / name, host / name, uid)


@pytest.fixture
def native(world) -> Site:
    """An empty directory on the native filesystem of /tmp."""
    (world / "native").mkdir(exist_ok=True)
    name = _fresh(world / "native")
    return Site("native", world / "native" / name)
