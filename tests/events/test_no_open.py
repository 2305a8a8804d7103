"""No-open mode: the kernel sends no RELEASE once it has met an OPEN answered ENOSYS, for files
created through the mount too, so nothing a create opens may stay open on the server."""

import json
import os
import subprocess
import sys

from eventkit import wait_for_events
from mounting import bridgefs_server, remote_mount


def test_files_created_after_the_kernel_stopped_opening_hold_nothing_open(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "existing").write_bytes(b"x")
    mnt = tmp_path / "mnt"
    with bridgefs_server(
        {"share": str(host)}, f"unix:{tmp_path / 's.sock'}", options=["--max-open", "20"]
    ) as (address, _):
        with remote_mount(address, "share", mnt):
            wait_for_events(mnt)
            assert (mnt / "existing").read_bytes() == b"x"  # OPEN: ENOSYS, no-open from here
            made = mnt / "made"
            made.mkdir()
            for i in range(100):  # five times what the server lets the session hold open
                with open(made / f"f{i:03}", "wb") as f:
                    f.write(b"y" * i)
                    f.flush()
                    os.fsync(f.fileno())
            with open(made / "f007", "r+b") as f:  # an existing file, opened for writing
                f.seek(0, os.SEEK_END)
                f.write(b"more")
            out = subprocess.run(
                [sys.executable, "-m", "bridgefs", "stats", str(mnt), "--json"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
    assert sorted(os.listdir(host / "made")) == [f"f{i:03}" for i in range(100)]
    assert (host / "made" / "f099").read_bytes() == b"y" * 99
    assert (host / "made" / "f007").read_bytes() == b"y" * 7 + b"more"
    assert "Release" not in json.loads(out)["rpc"]
