"""Watchers inside the mount hear host-side changes, with the right names and kinds."""

import os
import subprocess

from eventkit import assert_native_sequence, wait_settled


def test_host_changes_reach_inotifywait(watched_share, inotify):
    host, mnt = watched_share
    deep = host / "a" / "b" / "c"
    deep.mkdir(parents=True)
    inotify.expect("CREATE", "a")
    # inotifywait -r adds watches for new directories as it sees them; give it the tree first
    os.listdir(mnt / "a" / "b" / "c")
    inotify.watching(mnt / "a" / "b" / "c")

    (deep / "new.txt").write_text("one")
    assert "ISDIR" not in inotify.expect("CREATE", "a/b/c/new.txt")

    (deep / "new.txt").write_text("two, longer")
    inotify.expect("MODIFY", "a/b/c/new.txt")

    os.chmod(deep / "new.txt", 0o600)
    inotify.expect("ATTRIB", "a/b/c/new.txt")

    os.rename(deep / "new.txt", deep / "renamed.txt")
    inotify.expect("MOVED_FROM", "a/b/c/new.txt")
    inotify.expect("MOVED_TO", "a/b/c/renamed.txt")

    os.unlink(deep / "renamed.txt")
    inotify.expect("DELETE", "a/b/c/renamed.txt")

    (deep / "sub").mkdir()
    assert "ISDIR" in inotify.expect("CREATE", "a/b/c/sub")
    (deep / "sub").rmdir()
    assert "ISDIR" in inotify.expect("DELETE", "a/b/c/sub")


def test_editor_style_atomic_save(watched_share, inotify):
    host, mnt = watched_share
    (host / "app.js").write_text("v1")
    inotify.expect("CREATE", "app.js")
    tmp = host / ".app.js.swp"
    tmp.write_text("v2 of the file")
    os.rename(tmp, host / "app.js")
    inotify.expect("MOVED_TO", "app.js")
    assert (mnt / "app.js").read_text() == "v2 of the file"


def test_changes_through_the_mount_are_heard_once(watched_share, inotify):
    host, mnt = watched_share
    (mnt / "dir").mkdir()
    inotify.expect("CREATE", "dir")
    inotify.watching(mnt / "dir")
    (mnt / "local.txt").write_text("x")
    os.rename(mnt / "local.txt", mnt / "dir" / "moved.txt")
    os.unlink(mnt / "dir" / "moved.txt")
    wait_settled(host, mnt)  # an echo from the server, if one (wrongly) came, is replayed by now
    (mnt / "end").mkdir()  # every replay is in inotifywait's queue before this event
    events = inotify.until("CREATE", "end")
    creates = [p for flags, p in events if "CREATE" in flags and p == "local.txt"]
    deletes = [p for flags, p in events if "DELETE" in flags and p == "dir/moved.txt"]
    moves = [p for flags, p in events if "MOVED_TO" in flags]
    assert creates == ["local.txt"], events
    assert deletes == ["dir/moved.txt"], events
    assert moves == ["dir/moved.txt"], events


def test_a_file_created_and_deleted_at_once_is_never_heard_deleted_unseen(watched_share, inotify):
    """`printf x > new; rm new` on the host: the watcher hears both, or neither, never only the
    deletion (native inotify cannot give a DELETE of a name it never saw created)."""
    host, _ = watched_share
    for i in range(50):
        path = host / f"blink-{i}"
        path.write_bytes(b"x")
        path.unlink()
        tmp = host / f"moved-{i}.tmp"
        tmp.write_bytes(b"y")
        os.rename(tmp, host / f"kept-{i}")
    (host / "end").mkdir()
    events = inotify.until("CREATE", "end")
    created = set()
    for flags, path in events:
        if "CREATE" in flags or "MOVED_TO" in flags:
            created.add(path)
        if "DELETE" in flags:
            assert path in created, f"{sorted(flags)} of {path}, never created: {events}"
            created.discard(path)
    for i in range(50):
        assert f"kept-{i}" in created, f"kept-{i} was never heard of: {events}"


def test_a_burst_of_blinking_files_is_heard_in_a_native_order(watched_share, inotify):
    """`printf x > new; rm new` over and over on the host, one name: whatever the watcher hears
    of it, each DELETE follows a CREATE of the name."""
    host, _ = watched_share
    subprocess.run(
        ["sh", "-c", 'for i in $(seq 200); do printf x > "$1/new"; rm "$1/new"; done', "sh", host],
        check=True,
    )
    (host / "end").mkdir()
    present = assert_native_sequence(inotify.until("CREATE", "end"))
    assert "new" not in present


def test_a_rename_chain_is_heard_in_a_native_order(watched_share, inotify):
    """a -> b -> c on the host, for many files at once: the watcher never hears a name moved
    away that it never heard arrive, and hears each file end as c.  (A name it heard arrive
    whose move on came too late to be replayed stays in its view: a.)"""
    host, _ = watched_share
    for i in range(50):
        (host / f"a{i}").write_bytes(b"x")
        os.rename(host / f"a{i}", host / f"b{i}")
        os.rename(host / f"b{i}", host / f"c{i}")
    (host / "end").mkdir()
    present = assert_native_sequence(inotify.until("CREATE", "end"))
    for i in range(50):
        assert f"c{i}" in present and f"b{i}" not in present, present
