"""The watchers developer tools use hear host-side changes made inside the mount's tree."""

import json
import os
import pathlib
import queue
import shutil
import subprocess
import threading
import time

import pytest
from waiting import PATIENCE, inotify_watched_inodes, wait_until
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from eventkit import wait_settled

NODE_DIR = pathlib.Path(__file__).parent / "node"


class Recorder(FileSystemEventHandler):
    def __init__(self, root):
        self.root = str(root)
        self.events = queue.Queue()

    def on_any_event(self, event):
        rel = os.path.relpath(event.src_path, self.root)
        dest = (
            os.path.relpath(event.dest_path, self.root) if getattr(event, "dest_path", "") else ""
        )
        self.events.put((event.event_type, rel, dest, event.is_directory))

    def expect(self, kind, path, timeout=PATIENCE, is_dir=None):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                ev = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(ev)
            if (
                ev[0] == kind
                and (ev[1] == path or ev[2] == path)
                and (is_dir is None or ev[3] == is_dir)
            ):
                return ev
        raise AssertionError(f"no {kind} for {path}; saw {seen}")


def test_python_watchdog_hears_host_changes(watched_share):
    host, mnt = watched_share
    (host / "pkg" / "sub").mkdir(parents=True)
    wait_settled(host, mnt)  # their creations are in: the observer starts on a quiet tree
    os.listdir(mnt / "pkg" / "sub")
    recorder = Recorder(mnt)
    observer = Observer()
    observer.schedule(recorder, str(mnt), recursive=True)
    observer.start()
    try:
        sub = os.stat(mnt / "pkg" / "sub").st_ino
        wait_until(
            lambda: sub in (inotify_watched_inodes(os.getpid()) or ()),
            what="the observer watches pkg/sub",
        )
        target = host / "pkg" / "sub" / "module.py"
        target.write_text("x = 1\n")
        recorder.expect("created", "pkg/sub/module.py", is_dir=False)
        target.write_text("x = 2\n")
        recorder.expect("modified", "pkg/sub/module.py")
        os.chmod(target, 0o600)
        recorder.expect("modified", "pkg/sub/module.py")  # watchdog reports IN_ATTRIB so
        os.rename(target, host / "pkg" / "sub" / "renamed.py")
        recorder.expect("moved", "pkg/sub/renamed.py")
        (host / "pkg" / "sub" / "renamed.py").unlink()
        recorder.expect("deleted", "pkg/sub/renamed.py")
        (host / "pkg" / "newdir").mkdir()
        recorder.expect("created", "pkg/newdir", is_dir=True)
        (host / "pkg" / "newdir").rmdir()
        recorder.expect("deleted", "pkg/newdir", is_dir=True)
    finally:
        observer.stop()
        observer.join(5)


@pytest.fixture
def chokidar(watched_share):
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "chokidar").is_dir():
        pytest.fail("node and chokidar are needed: scripts/setup.sh installs them")
    proc = subprocess.Popen(
        [node, str(NODE_DIR / "watch.js"), str(watched_share[1])], stdout=subprocess.PIPE, text=True
    )
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(json.loads(line))

    threading.Thread(target=pump, daemon=True).start()
    assert lines.get(timeout=20)["event"] == "ready"
    try:
        yield lines
    finally:
        proc.terminate()
        proc.wait(10)


def _expect(lines, event, path, timeout=PATIENCE):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            got = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(got)
        if got["event"] == event and got.get("path") == path:
            return
    raise AssertionError(f"no {event} for {path}; saw {seen}")


def test_chokidar_hears_host_changes(watched_share, chokidar):
    host, mnt = watched_share
    index = host / "src" / "index.js"
    tmp = host / "src" / ".index.js.tmp"
    steps = [
        (lambda: (host / "src").mkdir(), "addDir", "src"),
        (lambda: index.write_text("console.log(1)\n"), "add", "src/index.js"),
        (lambda: index.write_text("console.log(2)\n"), "change", "src/index.js"),
        # an editor's atomic save
        (
            lambda: (tmp.write_text("console.log(3)\n"), os.rename(tmp, index)),
            "change",
            "src/index.js",
        ),
        (lambda: os.chmod(index, 0o600), "change", "src/index.js"),
        (lambda: index.unlink(), "unlink", "src/index.js"),
        (lambda: (host / "src").rmdir(), "unlinkDir", "src"),
    ]
    for act, event, path in steps:
        # chokidar folds events on one path that come within a few tens of ms into one
        time.sleep(0.3)
        act()
        _expect(chokidar, event, path)
