"""The multi-user suite's kit: who acts (``Who``), where (``Site``), and what the host side must
never hold afterwards (``host_problems``)."""

from __future__ import annotations

import json
import os
import pathlib
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

ACTOR = pathlib.Path(__file__).with_name("actor.py")
# Any Python 3 runs the actor; the system's is reachable by every user, the venv's may not be.
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


@dataclass(frozen=True)
class Who:
    uid: int
    gid: int
    groups: tuple[int, ...] = ()

    def setpriv(self) -> list[str]:
        groups = (
            ["--groups", ",".join(map(str, self.groups))] if self.groups else ["--clear-groups"]
        )
        return ["setpriv", "--reuid", str(self.uid), "--regid", str(self.gid), *groups]


ROOT = Who(0, 0)

Step = tuple[Who, Sequence[Sequence[object]]]


@dataclass
class Site:
    """An empty directory under test: ``root`` as processes see it, ``host`` the same directory
    on the host (None for native), ``server_uid`` the uid the server runs as."""

    kind: str
    root: pathlib.Path
    host: pathlib.Path | None = None
    server_uid: int | None = None

    def act(self, who: Who, ops: Sequence[Sequence[object]]) -> list[list[object]]:
        proc = subprocess.run(
            [*who.setpriv(), PYTHON, str(ACTOR), str(self.root), json.dumps(list(ops))],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, f"actor as {who} failed: {proc.stderr}"
        result: list[list[object]] = json.loads(proc.stdout)
        return result

    def play(self, steps: Sequence[Step]) -> list[list[list[object]]]:
        return [self.act(who, ops) for who, ops in steps]

    def shell(self, who: Who, script: str) -> subprocess.CompletedProcess[str]:
        """``sh -c script`` as ``who`` in ``root``."""
        return subprocess.run(
            [*who.setpriv(), "sh", "-c", script],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
        )


def host_problems(site: Site) -> list[str]:
    """What the host side must never hold after guests acted: under the overlay, anything not
    owned by the server's user, setuid/setgid bits, world-writable files or directories, device
    nodes, FIFOs, sockets, capabilities;
    with --ownership host, owners other than the guest's, device nodes, setuid/setgid-root."""
    assert site.host is not None
    problems = []
    for dirpath, dirnames, filenames in os.walk(site.host):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, site.host)
            st = os.lstat(path)
            fmt = stat.S_IFMT(st.st_mode)
            if fmt in (stat.S_IFCHR, stat.S_IFBLK):
                problems.append(f"{rel}: a device node")
            plain = stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)
            if plain and "security.capability" in os.listxattr(path):
                problems.append(f"{rel}: file capabilities")
            if site.kind == "host":
                guest = os.lstat(site.root / rel)
                if (st.st_uid, st.st_gid) != (guest.st_uid, guest.st_gid):
                    problems.append(f"{rel}: host owner {st.st_uid}:{st.st_gid}")
                if st.st_mode & stat.S_ISUID and st.st_uid == 0 and not stat.S_ISDIR(st.st_mode):
                    problems.append(f"{rel}: setuid root")
                continue
            if st.st_uid != site.server_uid:
                problems.append(f"{rel}: owned by {st.st_uid}, not the server's user")
            if st.st_mode & (stat.S_ISUID | stat.S_ISGID) or (plain and st.st_mode & 0o002):
                problems.append(f"{rel}: mode {oct(st.st_mode)}")
            if fmt not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
                problems.append(f"{rel}: a special file ({oct(fmt)})")
    return problems
