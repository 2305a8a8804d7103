"""Helpers for server tests: raw gRPC sessions and tree snapshots."""

from __future__ import annotations

import os
import pathlib

import grpc

from bridgefs.rpc import PROTOCOL_VERSION, SESSION_KEY, pb, pb_grpc


class Raw:
    """One session, spoken to with raw protobuf messages: ``raw.Lookup(parent=1, name=b"x")``."""

    def __init__(self, target: str, share: str, **handshake):
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.FilesStub(self.channel)
        request = dict(protocol_version=PROTOCOL_VERSION, share=share, client_name="raw-test")
        request.update(handshake)
        self.hello = self.stub.Handshake(
            pb.HandshakeRequest(**request), timeout=10, wait_for_ready=True
        )
        self.metadata = ((SESSION_KEY, self.hello.session),)

    def __getattr__(self, rpc: str):
        method = getattr(self.stub, rpc)
        request_type = {
            m.name: m.input_type for m in pb.DESCRIPTOR.services_by_name["Files"].methods
        }[rpc]
        cls = getattr(pb, request_type.name)

        def call(**fields):
            return method(cls(**fields), metadata=self.metadata, timeout=10)

        return call

    def handle(self, parent: int, name: bytes) -> int:
        reply = self.Lookup(parent=parent, name=name)
        assert reply.errno == 0, os.strerror(reply.errno)
        return reply.entry.handle

    def close(self) -> None:
        self.channel.close()


def snapshot(root: pathlib.Path) -> dict:
    """Everything about a tree that a mutation could change (atime aside)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames + [""]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            data = None
            if os.path.islink(path):
                data = os.readlink(path)
            elif os.path.isfile(path):
                data = pathlib.Path(path).read_bytes()
            out[os.path.relpath(path, root)] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_size,
                st.st_mtime_ns,
                st.st_nlink,
                data,
            )
    return out


class Inotify:
    """Records what happens inside watched directories (opens included), to prove the server
    never touched them.  inotify through ctypes: the standard library has no binding."""

    IN_ACCESS, IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x1, 0x2, 0x4, 0x8
    IN_OPEN, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x20, 0x40, 0x80, 0x100, 0x200
    ALL = 0xFFF

    def __init__(self, *paths):
        import ctypes

        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0
        for path in paths:
            wd = self._libc.inotify_add_watch(self.fd, os.fsencode(str(path)), self.ALL)
            assert wd >= 0, os.strerror(ctypes.get_errno())

    def events(self) -> list[tuple[int, bytes]]:
        import struct

        out = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            pos = 0
            while pos < len(data):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", data, pos)
                name = data[pos + 16 : pos + 16 + length].rstrip(b"\0")
                out.append((mask, name))
                pos += 16 + length

    def close(self) -> None:
        os.close(self.fd)


def fds_pointing_at(path) -> list[str]:
    """Open fds of this process whose target is ``path``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                found.append(fd)
        except OSError:
            pass
    return found
