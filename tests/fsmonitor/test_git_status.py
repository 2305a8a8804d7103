"""`bridgefs fsmonitor` as git's core.fsmonitor hook, on a repository in a real mount: git
status stays right after changes on the host and through the mount, and the hook answers
"everything" ("/") whenever the change stream was down since git's token.

With the hook and the untracked cache on, git does not look at files and folders the hook does
not name: a change the journal missed would show as a clean status, so each check below fails
if the journal loses one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from waiting import wait_until

from bridgefs.control import ask_raw
from eventkit import status, wait_for_events, wait_settled
from mounting import bridgefs_server

HOOK = f"{sys.executable} -m bridgefs fsmonitor"
IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(repo, *args: str, trace: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, **IDENTITY, **({"GIT_TRACE_FSMONITOR": "1"} if trace else {})}
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, env=env, check=True, timeout=120
    )


def porcelain(repo) -> set[str]:
    out = git(repo, "status", "--porcelain", "--untracked-files=all").stdout.decode()
    return {line for line in out.splitlines() if line}


def hook(repo, token: str) -> bytes:
    """The hook's answer to git's question, asked as git asks it (in the work tree)."""
    return subprocess.run(
        [sys.executable, "-m", "bridgefs", "fsmonitor", "2", token],
        cwd=repo,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout


def token_now(repo) -> str:
    """A token for now, as the hook hands git one."""
    return hook(repo, "none").split(b"\0", 1)[0].decode()


def make_repo(host, mnt):
    """A repository on the host, in a folder below the share's root; returns its path in the
    mount once git status there is clean and the hook gives answers of its own."""
    repo = host / "work" / "repo"
    (repo / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt", "sub/x.txt", "sub/y.txt"):
        (repo / name).write_text(f"{name}\n")
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["commit", "-qm", "start"],
        ["config", "core.fsmonitor", HOOK],
        ["config", "core.fsmonitorHookVersion", "2"],
        ["config", "core.untrackedCache", "true"],
    ):
        git(repo, *args)
    wait_settled(host, mnt)
    there = mnt / "work" / "repo"
    # The first status stores git's own timestamp as the token, the second gets one from the
    # hook ("/" for the timestamp), the third asks with the hook's token.
    for _ in range(3):
        assert porcelain(there) == set()
    return there


def test_git_status_follows_host_changes(served):
    host, mnt, _, _ = served
    repo = make_repo(host, mnt)
    on_host = host / "work" / "repo"

    (on_host / "a.txt").write_text("changed on the host\n")
    (on_host / "new.txt").write_text("new\n")
    (on_host / "b.txt").unlink()
    os.rename(on_host / "c.txt", on_host / "d.txt")
    os.rename(on_host / "sub", on_host / "moved")
    wait_settled(host, mnt)

    result = git(repo, "status", "--porcelain", "--untracked-files=all", trace=True)
    assert set(result.stdout.decode().splitlines()) == {
        " M a.txt",
        " D b.txt",
        " D c.txt",
        " D sub/x.txt",
        " D sub/y.txt",
        "?? d.txt",
        "?? moved/x.txt",
        "?? moved/y.txt",
        "?? new.txt",
    }
    trace = result.stderr.decode()
    assert "a.txt" in trace and "fsmonitor" in trace, trace  # the hook named it

    # The hook now names nothing: only what changed since the token git was given.
    token = token_now(repo)
    assert hook(repo, token) == token.encode() + b"\0"


def test_git_status_follows_changes_through_the_mount(served):
    host, mnt, _, _ = served
    repo = make_repo(host, mnt)

    (repo / "a.txt").write_text("changed through the mount\n")
    (repo / "new.txt").write_text("new\n")
    (repo / "b.txt").unlink()
    os.rename(repo / "c.txt", repo / "d.txt")
    os.rename(repo / "sub", repo / "moved")
    os.chmod(repo / "moved" / "x.txt", 0o755)

    assert porcelain(repo) == {
        " M a.txt",
        " D b.txt",
        " D c.txt",
        " D sub/x.txt",
        " D sub/y.txt",
        "?? d.txt",
        "?? moved/x.txt",
        "?? moved/y.txt",
        "?? new.txt",
    }

    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "second")
    assert porcelain(repo) == set()
    (repo / "moved" / "x.txt").write_text("again\n")
    assert porcelain(repo) == {" M moved/x.txt"}


def test_answers_everything_after_the_stream_was_down(served, tmp_path):
    host, mnt, listen, server = served
    repo = make_repo(host, mnt)
    token = token_now(repo)
    assert hook(repo, token).startswith(token.encode() + b"\0")
    assert not hook(repo, token).endswith(b"/")

    server.send_signal(signal.SIGKILL)
    server.wait(10)
    wait_until(
        lambda: status(mnt)["events"] != "flowing", what="the client sees the change stream break"
    )
    # Nothing is known while nobody watches (the mount itself answers nothing then, git would
    # fail first: asked on the control socket).
    question = b'{"cmd": "changes", "since": "%s", "under": "%s"}\n' % (
        token.encode(),
        b"work/repo".hex().encode(),
    )
    assert ask_raw(str(mnt), question).endswith(b"\0/")
    (host / "work" / "repo" / "a.txt").write_text("changed while nobody watched\n")

    with bridgefs_server({"share": str(host)}, listen):
        wait_for_events(mnt, timeout=60)
        # The stream is back, but what happened while it was down was never seen.
        assert hook(repo, token).endswith(b"\0/")
        assert porcelain(repo) == {" M a.txt"}
        # From a token given once the stream is up, answers are exact again.
        token = token_now(repo)
        assert hook(repo, token) == token.encode() + b"\0"


def test_tokens_of_others_answer_everything(served):
    host, mnt, _, _ = served
    repo = make_repo(host, mnt)
    for foreign in ("", "1733300000000000000", "bridgefs:0123456789abcdef:1", "bridgefs:x:y"):
        answer = hook(repo, foreign)
        assert answer.endswith(b"\0/") and answer.startswith(b"bridgefs:"), (foreign, answer)
