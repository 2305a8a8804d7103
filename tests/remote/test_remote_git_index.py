"""git in a VM over the same repository as the host must not rewrite the host's index.

The index caches each file's stat data (inode, size, uid/gid, mtime and ctime to the
nanosecond).  When the mount passes them through unchanged, `git status` through the mount finds
every entry clean without refreshing, and leaves .git/index alone, so host and VM do not keep
rewriting (and re-hashing) each other's index.

The VM's git runs once the mount has caught up with the host's changes (every tracked file stats
the same through the mount as on the host, polled for up to 5 s): with the change stream on, a
status run immediately after a burst of host changes can see attributes from before the last
ones (replayed creations carry the attributes of that moment until the later changes' own
invalidations arrive) and then rightly refreshes the index."""

from __future__ import annotations

import os
import random

from remotekit import git_env, poll, require_program, run

FILES = 200


def _make_repo(repo, env, git):
    rnd = random.Random(3)
    past = 1_600_000_000_000_000_000
    for i in range(FILES):
        p = repo / f"d{i % 7}" / f"sub{i % 3}" / f"file-{i:03d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(rnd.randrange(0, 5000)))
        if i % 10 == 0:
            os.chmod(p, 0o755)
    os.symlink("d0/sub0/file-000.txt", repo / "link")
    # Files older than the index: none is "racily clean", which git would re-check and rewrite.
    for dirpath, _dirs, names in os.walk(repo):
        for name in names:
            os.utime(
                os.path.join(dirpath, name), ns=(past, past + 123_456_789), follow_symlinks=False
            )
    run([git, "init", "-q", "-b", "main"], cwd=repo, env=env)
    run([git, "add", "-A"], cwd=repo, env=env)
    run([git, "commit", "-q", "-m", "many files"], cwd=repo, env=env)


def _stat_data(path):
    st = os.lstat(path)
    return (st.st_ino, st.st_size, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_ctime_ns)


def test_git_status_through_mount_leaves_index_alone(mode_share, tmp_path):
    git = require_program("git", "git")
    host, mnt, _ = mode_share
    env = git_env(tmp_path)
    repo = host / "repo"
    repo.mkdir()
    _make_repo(repo, env, git)
    assert run([git, "status", "--porcelain"], cwd=repo, env=env) == ""  # refreshes the index
    index = repo / ".git" / "index"
    before = (index.read_bytes(), os.stat(index).st_mtime_ns, os.stat(index).st_ino)
    # A second status on the host leaves it alone too (the baseline the mount must meet).
    assert run([git, "status", "--porcelain"], cwd=repo, env=env) == ""
    assert (index.read_bytes(), os.stat(index).st_mtime_ns, os.stat(index).st_ino) == before

    # The same repository seen through the mount, as from a VM, once the mount has caught up
    # with the host's changes (stream invalidations, or the 1 s timeouts with --no-events):
    # every tracked file then stats the same through the mount as on the host.
    vm_repo = mnt / "repo"
    tracked = run([git, "ls-files", "-z"], cwd=repo, env=env).split("\0")[:-1]
    assert len(tracked) == FILES + 1
    poll(
        lambda: all(_stat_data(repo / rel) == _stat_data(vm_repo / rel) for rel in tracked),
        what="the mount reports the host's stat data for every tracked file",
    )
    for _ in range(2):
        assert run([git, "status", "--porcelain"], cwd=vm_repo, env=env) == ""
        assert run([git, "diff", "--stat"], cwd=vm_repo, env=env) == ""
        after = (index.read_bytes(), os.stat(index).st_mtime_ns, os.stat(index).st_ino)
        assert after[1:] == before[1:], ".git/index was rewritten by git status through the mount"
        assert after[0] == before[0]
    # The stat data git recorded on the host is still what the mount reports.
    for rel in tracked:
        assert _stat_data(vm_repo / rel) == _stat_data(repo / rel), rel

    # A change made on the host is seen through the mount (so status is not blind), and the
    # host's own status is then what refreshes the index.
    (repo / "d1" / "sub1" / "file-001.txt").write_bytes(b"changed on the host\n")
    out = poll(
        lambda: run([git, "status", "--porcelain"], cwd=vm_repo, env=env),
        what="git status through the mount sees the host's change",
    )
    assert out == " M d1/sub1/file-001.txt\n"
