import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from mounting import mounted_by  # noqa: E402


@pytest.fixture
def memfs_root(tmp_path):
    """An empty memfs mounted through the kernel, served by its own process."""
    mnt = tmp_path / "memfs"
    with mounted_by(["memfs", str(mnt)], mnt):
        yield mnt
