import socket

import pytest

from bridgefs.address import VMADDR_CID_ANY, Address, parse_address


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("vsock:2:5000", Address("vsock", cid=2, port=5000)),
        ("vsock:any:5000", Address("vsock", cid=VMADDR_CID_ANY, port=5000)),
        ("vsock:-1:5000", Address("vsock", cid=VMADDR_CID_ANY, port=5000)),
        ("unix:/run/bridgefs.sock", Address("unix", path="/run/bridgefs.sock")),
        ("unix:relative/x.sock", Address("unix", path="relative/x.sock")),
        ("tcp:127.0.0.1:7000", Address("tcp", host="127.0.0.1", port=7000)),
        ("tcp:localhost:0", Address("tcp", host="localhost", port=0)),
        ("tcp:[::1]:7000", Address("tcp", host="::1", port=7000)),
    ],
)
def test_parse_valid(spec, expected):
    assert parse_address(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "vsock:2:5000",
        "vsock:any:5000",
        "unix:/run/b.sock",
        "tcp:127.0.0.1:7000",
        "tcp:[::1]:7000",
    ],
)
def test_str_round_trips(spec):
    assert str(parse_address(spec)) == spec


@pytest.mark.parametrize(
    "spec, words",
    [
        ("", "expected vsock"),
        ("127.0.0.1:7000", "expected vsock"),
        ("http://x:1", "expected vsock"),
        ("udp:1.2.3.4:5", "expected vsock"),
        ("vsock:2", "vsock:CID:PORT"),
        ("vsock:x:5000", "CID"),
        ("vsock:2:port", "port"),
        ("vsock:4294967296:1", "CID"),
        ("unix:", "empty path"),
        ("unix:a\0b", "NUL"),
        ("tcp:127.0.0.1", "tcp:HOST:PORT"),
        ("tcp::7000", "empty host"),
        ("tcp:host:70000", "port"),
        ("tcp:host:-1", "port"),
        ("tcp:::1:7000", "brackets"),
        ("tcp:[::1]7000", "IPV6"),
    ],
)
def test_parse_invalid(spec, words):
    with pytest.raises(ValueError) as info:
        parse_address(spec)
    assert words in str(info.value)
    assert repr(spec) in str(info.value) or spec == ""


def test_grpc_targets_and_sockaddrs():
    assert parse_address("tcp:[::1]:7").grpc_target() == "[::1]:7"
    assert parse_address("unix:/a").grpc_target() == "unix:/a"
    assert parse_address("tcp:[::1]:7").sockaddr() == (socket.AF_INET6, ("::1", 7))
    assert parse_address("vsock:3:9").sockaddr() == (socket.AF_VSOCK, (3, 9))
    with pytest.raises(ValueError, match="vsock"):
        parse_address("vsock:3:9").grpc_target()
