import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "events"))

from eventkit import wait_for_events  # noqa: E402
from mounting import bridgefs_server, remote_mount  # noqa: E402


@pytest.fixture
def served(tmp_path):
    """(host folder, mount point, the server's listen address, the server's process) of a
    share whose host changes stream to the client; returns once the stream is up."""
    host = tmp_path / "host"
    host.mkdir()
    mnt = tmp_path / "mnt"
    listen = f"unix:{tmp_path / 'server.sock'}"
    with bridgefs_server({"share": str(host)}, listen) as (address, server):
        with remote_mount(address, "share", mnt):
            wait_for_events(mnt)
            yield host, mnt, listen, server
