"""Helpers for the security tests: a server process, raw gRPC calls with or without a token."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import grpc

from bridgefs.credentials import token_metadata
from bridgefs.rpc import PROTOCOL_VERSION, SESSION_KEY, pb, pb_grpc


class ServeProcess:
    """`bridgefs serve` in its own process; ``address`` is the first address it listens on."""

    def __init__(self, options: list[str], shares: dict[str, str], log: pathlib.Path):
        args = [sys.executable, "-m", "bridgefs", "serve", *options]
        for name, path in shares.items():
            args += ["--share", f"{name}={path}"]
        self.log_path = log
        self._log = open(log, "w+")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.addresses: list[str] = []
        for line in self.proc.stdout:
            if not line.startswith("bridgefs: listening on "):
                break
            self.addresses.append(line.split()[-1])
            if len(self.addresses) == sum(1 for a in options if a == "--listen"):
                break
        if not self.addresses:
            self.stop()
            raise RuntimeError(f"server did not start: {self.log()}")
        self.address = self.addresses[0]

    def log(self) -> str:
        self._log.flush()
        return pathlib.Path(self.log_path).read_text()

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss(self) -> int:
        """Resident memory in bytes."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._log.close()


def grpc_target(address: str) -> str:
    kind, rest = address.split(":", 1)
    return rest if kind == "tcp" else address


class Raw:
    """One session with raw protobuf calls; ``token`` None sends none."""

    def __init__(self, address: str, share: str, token: str | None, channel=None):
        self.channel = channel or grpc.insecure_channel(grpc_target(address))
        self.stub = pb_grpc.FilesStub(self.channel)
        self.auth = (token_metadata(token),) if token else ()
        self.hello = self.stub.Handshake(
            pb.HandshakeRequest(
                protocol_version=PROTOCOL_VERSION, share=share, client_name="security-test"
            ),
            timeout=30,
            wait_for_ready=True,
            metadata=self.auth,
        )
        self.metadata = ((SESSION_KEY, self.hello.session), *self.auth)

    def call(self, rpc: str, request, timeout: float = 60):
        return getattr(self.stub, rpc)(request, metadata=self.metadata, timeout=timeout)

    def read_file(self, name: bytes) -> bytes:
        entry = self.call("Lookup", pb.NameRequest(parent=1, name=name))
        assert entry.errno == 0, os.strerror(entry.errno)
        opened = self.call("Open", pb.OpenRequest(handle=entry.entry.handle, flags=os.O_RDONLY))
        assert opened.errno == 0, os.strerror(opened.errno)
        reply = self.call("Read", pb.ReadRequest(fh=opened.fh, offset=0, size=1 << 16))
        assert reply.errno == 0, os.strerror(reply.errno)
        self.call("Release", pb.FileRequest(fh=opened.fh))
        return reply.data

    def close(self) -> None:
        self.channel.close()


def read_token(path: pathlib.Path) -> str:
    return path.read_text().strip()


def run_cli(args: list[str], **kw) -> subprocess.CompletedProcess:
    """`python -m bridgefs ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "bridgefs", *args], capture_output=True, text=True, timeout=60, **kw
    )
