"""Fixtures for server tests: a real server on a unix socket in tmp_path, and raw gRPC sessions."""

from __future__ import annotations

import pathlib

import pytest

from bridgefs.server import Limits, serve
from serverkit import Raw


@pytest.fixture
def tree(tmp_path: pathlib.Path):
    """tmp/share (served) and tmp/outside (must never change), each with a file."""
    share = tmp_path / "share"
    outside = tmp_path / "outside"
    share.mkdir()
    outside.mkdir()
    (share / "file").write_bytes(b"inside\n")
    (share / "dir").mkdir()
    (share / "dir" / "nested").write_bytes(b"nested\n")
    (outside / "secret").write_bytes(b"secret\n")
    return share, outside


@pytest.fixture
def start_server(tmp_path):
    servers = []

    def start(shares: dict, limits: Limits | None = None, listen: list[str] | None = None):
        sock = tmp_path / f"server{len(servers)}.sock"
        server = serve(
            shares, listen or [f"unix:{sock}"], limits=limits, max_workers=8, insecure=True
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(0)


@pytest.fixture
def server(tree, start_server):
    share, _ = tree
    return start_server({"s": (str(share), False), "ro": (str(share), True)})


@pytest.fixture
def raw(server):
    clients = []

    def connect(share: str = "s", **handshake) -> Raw:
        client = Raw(server.addresses[0], share, **handshake)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()
