"""Fixtures for the end-to-end tests on real remote mounts.

``share`` (tests/conftest.py) mounts a fresh share over each transport with the default options.
Tests about freshness use ``mode_share``, which adds a mount with ``--no-events``: by default a
mount follows the server's stream of host changes and keeps long-lived caches that each change
invalidates; with ``--no-events`` (or while the stream is down) only the short 1 s timeouts
bound what the kernel may trust.  Tests that exercise programs rather than transports use
``unix_share``.
"""

from __future__ import annotations

import pytest

from mounting import bridgefs_server, remote_mount
from remotekit import listen_address, mount_status, wait_events_flowing

# name: (transport, extra `bridgefs mount` options)
MODES = {
    "unix": ("unix", []),
    "tcp": ("tcp", []),
    "unix-no-events": ("unix", ["--no-events"]),
}


@pytest.fixture(params=sorted(MODES))
def mode(request):
    """(name, transport, extra mount options) of each way of mounting the freshness tests use."""
    transport, extra = MODES[request.param]
    return request.param, transport, extra


@pytest.fixture
def mode_share(tmp_path, host_dir, mode):
    """(host folder, mount point, server address) for each mode in MODES."""
    _name, transport, extra = mode
    mnt = tmp_path / "mnt"
    with bridgefs_server({"share": str(host_dir)}, listen_address(transport, tmp_path)) as (
        address,
        _server,
    ):
        with remote_mount(address, "share", mnt, *extra):
            if "--no-events" in extra:
                assert mount_status(mnt)["events"] == "off"
            else:
                wait_events_flowing(mnt)
            yield host_dir, mnt, address


@pytest.fixture
def unix_share(tmp_path, host_dir):
    """(host folder, mount point, server address) of a fresh share served on a unix socket."""
    mnt = tmp_path / "mnt"
    with bridgefs_server({"share": str(host_dir)}, f"unix:{tmp_path / 'server.sock'}") as (
        address,
        _server,
    ):
        with remote_mount(address, "share", mnt):
            yield host_dir, mnt, address
