"""Shares: a name, a host directory held open as an O_PATH fd, and a read-only flag.

The root fd is opened once at start-up; every name a client sends resolves below it (see
confine.py), so renaming or replacing the share's path on the host later does not move the share.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(slots=True)
class Share:
    name: str
    path: str
    read_only: bool
    root_fd: int = -1
    root_key: tuple[int, int] = field(default=(0, 0))  # (st_dev, st_ino) of the root directory

    def open(self) -> Share:
        fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            os.close(fd)
            raise NotADirectoryError(self.path)
        self.root_fd = fd
        self.root_key = (st.st_dev, st.st_ino)
        return self

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def __str__(self) -> str:
        return f"{self.name}={self.path}{':ro' if self.read_only else ''}"


def check_share_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"bad share name {name!r}: use letters, digits, '.', '_', '-' "
            f"(up to 64, starting with a letter or digit)"
        )
    return name


def parse_share_spec(spec: str) -> tuple[str, str, bool]:
    """``NAME=PATH[:ro]`` (``:rw`` is accepted too) -> (name, path, read_only)."""
    name, sep, path = spec.partition("=")
    if not sep or not path:
        raise ValueError(f"bad share {spec!r}: expected NAME=PATH or NAME=PATH:ro")
    read_only = False
    if path.endswith(":ro"):
        path, read_only = path[:-3], True
    elif path.endswith(":rw"):
        path = path[:-3]
    if not path:
        raise ValueError(f"bad share {spec!r}: empty path")
    return check_share_name(name), path, read_only


def open_shares(spec: dict[str, tuple[str, bool]]) -> dict[str, Share]:
    """Open every share's root; raises OSError/ValueError naming the bad one, opening none."""
    shares: dict[str, Share] = {}
    try:
        for name, (path, read_only) in spec.items():
            check_share_name(name)
            real = os.path.realpath(os.fspath(path))
            try:
                shares[name] = Share(name, real, bool(read_only)).open()
            except OSError as exc:
                raise OSError(
                    exc.errno, f"share {name!r}: cannot open {real!r}: {exc.strerror}"
                ) from exc
    except BaseException:
        for share in shares.values():
            share.close()
        raise
    return shares
