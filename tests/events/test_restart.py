"""The change stream is cut (the server restarts): caches are dropped, nothing stale is served,
and once the server is back, the client attaches again and changes flow as before."""

import signal
import subprocess
import sys

from waiting import wait_until

from eventkit import Inotifywait, status, wait_for_events
from mounting import bridgefs_server, remote_mount


def test_server_restart(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "config.txt").write_text("old contents")
    mnt = tmp_path / "mnt"
    listen = f"unix:{tmp_path / 'server.sock'}"
    with bridgefs_server({"share": str(host)}, listen) as (address, server):
        with remote_mount(address, "share", mnt):
            wait_for_events(mnt)
            assert (mnt / "config.txt").read_text() == "old contents"  # cached, long-lived
            server.send_signal(signal.SIGKILL)
            server.wait(10)
            wait_until(
                lambda: status(mnt)["events"] != "flowing",
                what="the client sees the change stream break",
            )
            assert status(mnt)["cache_mode"] == "short"

            (host / "config.txt").write_text("new contents")  # changed while nobody watched
            # Served from the kernel's caches it would still be the old text: it must be the
            # new text or an error, never the old one.
            out = subprocess.run(
                [sys.executable, "-c", f"print(open({str(mnt / 'config.txt')!r}).read())"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert "old contents" not in out.stdout

            with bridgefs_server({"share": str(host)}, listen):
                wait_for_events(mnt, timeout=30)
                assert (mnt / "config.txt").read_text() == "new contents"
                watcher = Inotifywait(mnt)
                try:
                    (host / "after.txt").write_text("hello")
                    watcher.expect("CREATE", "after.txt")
                finally:
                    watcher.close()
                assert (mnt / "after.txt").read_text() == "hello"
                assert status(mnt)["reconnects"] >= 1
