import os
import pathlib
import subprocess
import sys
import uuid

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from mounting import bridgefs_server, mounted_by, remote_mount  # noqa: E402


@pytest.fixture(scope="session")
def memfs_mount(tmp_path_factory):
    """A memfs mounted through the kernel, served by its own process, shared by the tests."""
    mnt = tmp_path_factory.mktemp("memfs") / "mnt"
    with mounted_by(["memfs", str(mnt)], mnt):
        yield mnt


def _fresh_dir(mount, request):
    """An empty directory of the test's own on a shared mount."""
    d = mount / f"t-{uuid.uuid4().hex[:12]}"
    d.mkdir()
    return d


@pytest.fixture
def memfs_root(memfs_mount, request):
    """An empty directory on memfs."""
    return _fresh_dir(memfs_mount, request)


@pytest.fixture
def host_dir(tmp_path):
    """The host folder a remote share serves."""
    d = tmp_path / "host"
    d.mkdir()
    return d


@pytest.fixture(params=["unix", "tcp"])
def transport(request, tmp_path):
    """The address a bridgefs server listens on, for each transport tests run on."""
    if request.param == "unix":
        return f"unix:{tmp_path / 'server.sock'}"
    return "tcp:127.0.0.1:0"


def _remote(tmp_path_factory, kind):
    base = tmp_path_factory.mktemp(f"remote-{kind}")
    host = base / "host"
    host.mkdir()
    listen = f"unix:{base / 'server.sock'}" if kind == "unix" else "tcp:127.0.0.1:0"
    with bridgefs_server({"share": str(host)}, listen) as (address, _server):
        with remote_mount(address, "share", base / "mnt"):
            yield base / "mnt"


@pytest.fixture(scope="session")
def remote_unix_mount(tmp_path_factory):
    """A share mounted through a bridgefs server on a unix socket, shared by the tests."""
    yield from _remote(tmp_path_factory, "unix")


@pytest.fixture(scope="session")
def remote_tcp_mount(tmp_path_factory):
    """A share mounted through a bridgefs server on TCP loopback, shared by the tests."""
    yield from _remote(tmp_path_factory, "tcp")


@pytest.fixture
def remote_unix_root(remote_unix_mount, request):
    """An empty directory on a share served over a unix socket."""
    return _fresh_dir(remote_unix_mount, request)


@pytest.fixture
def remote_tcp_root(remote_tcp_mount, request):
    """An empty directory on a share served over TCP."""
    return _fresh_dir(remote_tcp_mount, request)


@pytest.fixture
def share(tmp_path, host_dir, transport):
    """(host folder, mount point, server address) of a share mounted over each transport."""
    mnt = tmp_path / "mnt"
    with bridgefs_server({"share": str(host_dir)}, transport) as (address, _server):
        with remote_mount(address, "share", mnt):
            yield host_dir, mnt, address


@pytest.fixture
def busy_cores():
    """One lowest-priority busy loop per core for the length of the test, each stopped by its
    pid: a server's watcher then falls seconds behind the changes it reports."""
    hogs = [
        subprocess.Popen(["nice", "-n", "19", "sh", "-c", "while :; do :; done"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(10)
