"""`bridgefs fsmonitor`: git's ``core.fsmonitor`` hook, protocol version 2, for a repository
on a bridgefs mount.

git runs ``bridgefs fsmonitor 2 TOKEN`` in the work tree and reads, NUL-separated, a new token
and the paths changed since TOKEN, relative to the work tree (a folder changed as a whole ends in
``/``); a lone ``/`` means everything may have changed.  The answer comes from the mount's change
journal, asked through the mount's control socket; anything this hook cannot be sure of (no
bridgefs mount here, a mount that cannot answer, a token it did not issue) is answered ``/``,
which costs git a full scan and nothing else.

Started on every `git status`: it imports only what asking the socket needs.
"""

from __future__ import annotations

import os
import sys

from .control import ask, find_socket

PROTOCOL = "2"
UNSURE = "bridgefs:unsure"  # a token no mount issues: the next question is answered "/" too


def mount_of(path: str) -> str | None:
    """The mount point of the mount ``path`` (resolved) is on, from the mount table (a stat of
    a FUSE mount point could cost a request)."""
    best = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 5:
                continue
            point = _unescape(parts[4])
            if (path == point or path.startswith(point.rstrip("/") + "/")) and (
                best is None or len(point) > len(best)
            ):
                best = point
    return best


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def changes(worktree: str, token: str) -> tuple[str, list[bytes] | None]:
    """(the new token, the paths changed under ``worktree`` since ``token``, relative to it),
    None for the paths when everything may have changed."""
    mountpoint = mount_of(worktree)
    if mountpoint is None or find_socket(mountpoint) is None:
        return UNSURE, None
    under = os.path.relpath(worktree, mountpoint)
    answer = ask(mountpoint, "changes", since=token, under="" if under == "." else under)
    new = str(answer.get("token") or UNSURE)
    if "error" in answer or answer.get("everything") or "paths" not in answer:
        return new, None
    # git keeps no entries inside its own folder: reporting them would only make it rescan.
    paths = [os.fsencode(p) for p in answer["paths"]]
    return new, [p for p in paths if p != b".git" and not p.startswith(b".git/")]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != PROTOCOL:
        sys.stderr.write(
            "bridgefs fsmonitor: git's core.fsmonitor hook, protocol version 2 only: set "
            "git config core.fsmonitorHookVersion 2\n"
        )
        return 1
    try:
        token, paths = changes(os.getcwd(), argv[1])
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"bridgefs fsmonitor: {exc}: answering that everything changed\n")
        token, paths = UNSURE, None
    out = sys.stdout.buffer
    out.write(token.encode() + b"\0")
    out.write(b"/" if paths is None else b"".join(p + b"\0" for p in paths if p))
    out.flush()
    return 0
