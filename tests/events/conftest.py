import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).parent))

from eventkit import Inotifywait, wait_for_events  # noqa: E402
from mounting import bridgefs_server, remote_mount  # noqa: E402


@pytest.fixture
def watched_mount(tmp_path):
    """(host folder, mount point, the client's process) of a share whose host changes stream
    to the client; the fixture returns once the stream is up (`bridgefs status` says so)."""
    host = tmp_path / "host"
    host.mkdir()
    mnt = tmp_path / "mnt"
    with bridgefs_server({"share": str(host)}, f"unix:{tmp_path / 'server.sock'}") as (address, _):
        with remote_mount(address, "share", mnt) as client:
            wait_for_events(mnt)
            yield host, mnt, client


@pytest.fixture
def watched_share(watched_mount):
    """(host folder, mount point) of ``watched_mount``."""
    return watched_mount[:2]


@pytest.fixture
def inotify(watched_share):
    if subprocess.run(["which", "inotifywait"], capture_output=True).returncode != 0:
        pytest.fail("inotifywait is missing: install Debian's inotify-tools (scripts/setup.sh)")
    w = Inotifywait(watched_share[1])
    try:
        yield w
    finally:
        w.close()
