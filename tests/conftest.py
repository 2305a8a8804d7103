import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from mounting import mounted  # noqa: E402


@pytest.fixture
def memfs_root(tmp_path):
    """An empty memfs mounted through the kernel."""
    from bridgefs.memfs import MemFS

    with mounted(MemFS(), tmp_path / "memfs") as session:
        yield pathlib.Path(session.mountpoint)
