"""Fixtures for the security tests: a real `bridgefs serve` process with a token, and a share
with a file inside and a secret outside it."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from securitykit import ServeProcess  # noqa: E402


@pytest.fixture
def tree(tmp_path: pathlib.Path):
    """tmp/share (served, with a file) and tmp/outside/secret (never to be read)."""
    share = tmp_path / "share"
    outside = tmp_path / "outside"
    share.mkdir()
    outside.mkdir()
    (share / "file").write_bytes(b"inside\n")
    (outside / "secret").write_bytes(b"secret\n")
    return share, outside


@pytest.fixture
def token_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    return path


@pytest.fixture
def wrong_token_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "wrong-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    return path


@pytest.fixture
def serve(tmp_path: pathlib.Path):
    """serve(listen, *options, shares=...) -> a running ServeProcess, stopped after the test."""
    started: list[ServeProcess] = []

    def start(*args: str, shares: dict[str, str] | None = None) -> ServeProcess:
        proc = ServeProcess(list(args), shares or {}, tmp_path / f"serve-{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
