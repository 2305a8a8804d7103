"""Endpoint addresses as typed on the command line.

``vsock:CID:PORT``, ``unix:PATH``, ``tcp:HOST:PORT`` and ``serial:PORT``.

``serial:`` is a virtio-serial port (QEMU without vhost-vsock): in the guest PORT is the port's
name (``-device virtserialport,name=NAME``) or its device (``/dev/vport0p1``); on the host it is
the unix socket that QEMU's ``-chardev socket`` connects to.  See bridgefs.serial.

``vsock:any:PORT`` (or CID -1) listens on every CID (VMADDR_CID_ANY); the host is CID 2.
IPv6 hosts go in brackets: ``tcp:[::1]:7000``.  Port 0 asks the system for a free port when
listening.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

VMADDR_CID_ANY = 0xFFFFFFFF
_KINDS = ("vsock", "unix", "tcp", "serial")


@dataclass(frozen=True, slots=True)
class Address:
    kind: str  # "vsock" | "unix" | "tcp" | "serial"
    host: str = ""  # tcp: host name or IP literal (without brackets)
    port: int = 0  # tcp and vsock
    path: str = ""  # unix; serial: a port's name or device (guest), a unix socket (host)
    cid: int = 0  # vsock

    def __str__(self) -> str:
        if self.kind in ("unix", "serial"):
            return f"{self.kind}:{self.path}"
        if self.kind == "vsock":
            cid = "any" if self.cid == VMADDR_CID_ANY else str(self.cid)
            return f"vsock:{cid}:{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"

    def grpc_target(self) -> str:
        """The target string grpcio understands (it cannot speak vsock itself)."""
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"{host}:{self.port}"
        raise ValueError(f"grpcio cannot dial {self}: it goes through bridgefs.vsock or .serial")

    def sockaddr(self) -> tuple[int, object]:
        """(family, address) for the socket module."""
        if self.kind in ("unix", "serial"):  # serial: the host's socket for QEMU
            return socket.AF_UNIX, self.path
        if self.kind == "vsock":
            return socket.AF_VSOCK, (self.cid, self.port)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        return family, (self.host, self.port)


def _port(text: str, spec: str) -> int:
    if not text.isdigit():
        raise ValueError(f"bad port {text!r} in address {spec!r}: expected a number 0-65535")
    port = int(text)
    if port > 65535:
        raise ValueError(f"bad port {text!r} in address {spec!r}: expected a number 0-65535")
    return port


def _parse_vsock(rest: str, spec: str) -> Address:
    cid_text, sep, port_text = rest.partition(":")
    if not sep:
        raise ValueError(f"bad vsock address {spec!r}: expected vsock:CID:PORT")
    if cid_text in ("any", "-1"):
        cid = VMADDR_CID_ANY
    elif cid_text.isdigit() and int(cid_text) <= 0xFFFFFFFF:
        cid = int(cid_text)
    else:
        raise ValueError(f"bad vsock CID {cid_text!r} in {spec!r}: expected a number or 'any'")
    port = int(port_text) if port_text.isdigit() else -1
    if not 0 <= port <= 0xFFFFFFFF:
        raise ValueError(f"bad vsock port {port_text!r} in {spec!r}: expected a number")
    return Address("vsock", cid=cid, port=port)


def _parse_tcp(rest: str, spec: str) -> Address:
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or not tail.startswith(":"):
            raise ValueError(f"bad tcp address {spec!r}: expected tcp:[IPV6]:PORT")
        port_text = tail[1:]
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep:
            raise ValueError(f"bad tcp address {spec!r}: expected tcp:HOST:PORT")
        if ":" in host:
            raise ValueError(
                f"bad tcp address {spec!r}: put IPv6 hosts in brackets, tcp:[::1]:PORT"
            )
    if not host:
        raise ValueError(f"bad tcp address {spec!r}: empty host")
    return Address("tcp", host=host, port=_port(port_text, spec))


def parse_address(spec: str) -> Address:
    """Parse an address; raises ValueError naming what is wrong."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in _KINDS:
        raise ValueError(
            f"bad address {spec!r}: expected vsock:CID:PORT, unix:PATH, tcp:HOST:PORT or "
            "serial:PORT"
        )
    if kind in ("unix", "serial"):
        if not rest:
            raise ValueError(f"bad {kind} address {spec!r}: empty path")
        if "\0" in rest:
            raise ValueError(f"bad {kind} address {spec!r}: NUL in path")
        return Address(kind, path=rest)
    if kind == "vsock":
        return _parse_vsock(rest, spec)
    return _parse_tcp(rest, spec)
