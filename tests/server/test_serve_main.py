"""The CLI entry point's argument handling (successful runs are exercised in tests/client)."""

import pytest

from bridgefs.server import serve, serve_main


@pytest.mark.parametrize(
    "argv",
    [
        ["--share", "noequals", "--listen", "tcp:127.0.0.1:0"],
        ["--share", "bad name=/tmp", "--listen", "tcp:127.0.0.1:0"],
        ["--share", "a=/nonexistent/bridgefs", "--listen", "tcp:127.0.0.1:0"],
        ["--share", "a=/tmp", "--share", "a=/var", "--listen", "tcp:127.0.0.1:0"],
        ["--share", "a=/tmp", "--listen", "carrier-pigeon:1"],
    ],
)
def test_bad_arguments_exit_2(argv, caplog):
    assert serve_main(argv) == 2
    assert caplog.records  # the reason was logged


def test_missing_arguments_are_usage_errors():
    with pytest.raises(SystemExit):
        serve_main(["--listen", "tcp:127.0.0.1:0"])


def test_serve_rejects_a_file_as_share(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(OSError):
        serve({"s": (str(tmp_path / "f"), False)}, ["tcp:127.0.0.1:0"])
    with pytest.raises(ValueError):
        serve({}, ["tcp:127.0.0.1:0"])
    with pytest.raises(ValueError):
        serve({"s": (str(tmp_path), False)}, [])


def test_serve_returns_bound_addresses_and_stops(tmp_path):
    server = serve(
        {"s": (str(tmp_path), False)}, ["tcp:127.0.0.1:0", f"unix:{tmp_path}/a.sock"], insecure=True
    )
    try:
        kind, host, port = server.addresses[0].split(":")
        assert (kind, host) == ("tcp", "127.0.0.1") and int(port) > 0
        assert server.addresses[1] == f"unix:{tmp_path}/a.sock"
    finally:
        server.stop()
    assert server.wait(0)
