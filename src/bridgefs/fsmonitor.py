"""`bridgefs fsmonitor`: git's ``core.fsmonitor`` hook, protocol version 2, for a repository
on a bridgefs mount.

git runs ``bridgefs fsmonitor 2 TOKEN`` in the work tree and reads, NUL-separated, a new token
and the paths changed since TOKEN, relative to the work tree (a folder changed as a whole ends in
``/``); a lone ``/`` means everything may have changed.  The answer comes from the mount's change
journal, asked through the mount's control socket, which answers in that format already;
anything this hook cannot be sure of (no bridgefs mount here, a mount that cannot answer, a token
it did not issue) is answered ``/``, which costs git a full scan and nothing else.

Started on every `git status`, where its start is most of what the monitor costs: it imports
no more than asking the socket needs (no json, argparse or logging).
"""

from __future__ import annotations

import os
import sys

from .control import ask_raw, find_socket

PROTOCOL = "2"
UNSURE = b"bridgefs:unsure"  # a token no mount issues: the next question is answered "/" too
# What a token of ours is made of: anything else is sent as no token (built by hand, the
# request needs no escaping).
TOKEN_CHARS = frozenset("bridgefs:0123456789abcdef")


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


def answer(worktree: str, token: str) -> bytes:
    """What git reads: the new token, then the paths changed under ``worktree`` since
    ``token``, relative to it, each NUL-terminated; or the token and ``/``."""
    mountpoint = mount_of(worktree)
    if mountpoint is None or find_socket(mountpoint) is None:
        return UNSURE + b"\0/"
    under = os.path.relpath(worktree, mountpoint)
    under_hex = b"" if under == "." else os.fsencode(under).hex().encode()
    since = token.encode() if set(token) <= TOKEN_CHARS else b""
    reply = ask_raw(
        mountpoint,
        b'{"cmd": "changes", "since": "%s", "under": "%s"}\n' % (since, under_hex),
    )
    new, sep, rest = reply.partition(b"\0")
    if not sep or not new or new.startswith(b"{"):  # (a JSON line: the mount's error)
        return UNSURE + b"\0/"
    if rest == b"/":
        return reply
    # git keeps no entries inside its own folder: naming them would only make it rescan.
    paths = [p for p in rest.split(b"\0") if p and p != b".git" and not p.startswith(b".git/")]
    return new + b"\0" + b"".join(p + b"\0" for p in paths)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != PROTOCOL:
        sys.stderr.write(
            "bridgefs fsmonitor: git's core.fsmonitor hook, protocol version 2 only: set "
            "git config core.fsmonitorHookVersion 2\n"
        )
        return 1
    try:
        out = answer(os.getcwd(), argv[1])
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"bridgefs fsmonitor: {exc}: answering that everything changed\n")
        out = UNSURE + b"\0/"
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    return 0
