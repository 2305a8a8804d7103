"""TLS with client certificates on a tcp: listener: a client without a certificate, or with one
another CA signed, gets no session; one the server's client CA signed reads the share."""

from __future__ import annotations

import errno
import pathlib
import shutil
import subprocess

import pytest

from bridgefs.client.session import ServerSession
from bridgefs.client.writes import WriteBehind
from bridgefs.credentials import ClientCredentials
from bridgefs.fuse.filesystem import FsError
from bridgefs.rpc import pb


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: pathlib.Path, name: str) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        cwd=d,
    )


def _signed(d: pathlib.Path, name: str, ca: str, san: str) -> None:
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={name}",
        cwd=d,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.pem",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.pem",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        cwd=d,
    )


@pytest.fixture
def pki(tmp_path):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed: install the Debian package 'openssl'")
    d = tmp_path / "pki"
    d.mkdir()
    _ca(d, "ca")
    _ca(d, "rogue-ca")
    _signed(d, "server", "ca", "IP:127.0.0.1,DNS:localhost")
    _signed(d, "client", "ca", "DNS:client")
    _signed(d, "rogue", "rogue-ca", "DNS:rogue")
    return d


def _session(address: str, creds: ClientCredentials, timeout: float = 3) -> ServerSession:
    return ServerSession(address, "s", WriteBehind(), credentials=creds, connect_timeout=timeout)


def test_tls_needs_a_client_certificate_of_the_client_ca(tree, serve, pki):
    share, _ = tree
    server = serve(
        "--listen",
        "tcp:127.0.0.1:0",
        "--tls-cert",
        str(pki / "server.pem"),
        "--tls-key",
        str(pki / "server.key"),
        "--tls-client-ca",
        str(pki / "ca.pem"),
        shares={"s": str(share)},
    )
    ca = (pki / "ca.pem").read_bytes()
    for creds in (
        ClientCredentials(),  # plain text to a TLS port
        ClientCredentials(tls_ca=ca),  # no client certificate
        ClientCredentials(
            tls_ca=ca,
            tls_cert=(pki / "rogue.pem").read_bytes(),
            tls_key=(pki / "rogue.key").read_bytes(),
        ),
    ):
        with pytest.raises(FsError) as info:
            _session(server.address, creds)
        assert info.value.errno in (errno.ENOTCONN, errno.EACCES)
    good = ClientCredentials(
        tls_ca=ca,
        tls_cert=(pki / "client.pem").read_bytes(),
        tls_key=(pki / "client.key").read_bytes(),
    )
    session = _session(server.address, good, timeout=30)
    try:
        entry = session.call(session.stub.Lookup, pb.NameRequest(parent=1, name=b"file"))
        data = session.call(
            session.stub.Read, pb.ReadRequest(handle=entry.entry.handle, offset=0, size=100)
        )
        assert data.data == b"inside\n"
    finally:
        session.close(lambda: None)


def test_tls_without_a_client_ca_is_no_authentication(tree):
    """Server-only TLS does not say who the client is: serve still wants a token for tcp:."""
    from securitykit import run_cli

    share, _ = tree
    proc = run_cli(
        [
            "serve",
            "--share",
            f"s={share}",
            "--listen",
            "tcp:127.0.0.1:0",
            "--tls-cert",
            "/dev/null",
            "--tls-key",
            "/dev/null",
        ]
    )
    assert proc.returncode == 2 and "--token-file" in proc.stderr
