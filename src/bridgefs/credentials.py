"""The secrets both ends read: a shared token (sent as call metadata) and TLS files.

A token file must not be readable by anyone but its owner: a secret other local users can read
keeps no one out, so a looser mode is refused rather than trusted.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

TOKEN_KEY = "authorization"  # gRPC metadata keys are lower case
TOKEN_SCHEME = "Bearer "
MIN_TOKEN = 16  # bytes: anything shorter can be guessed
MAKE_TOKEN = "head -c 32 /dev/urandom | base64 > token && chmod 600 token"
TOKEN_ENV = "BRIDGEFS_TOKEN_FILE"  # mount: the same as --token-file


def read_token(path: str) -> str:
    """The token in ``path`` (surrounding whitespace dropped); ValueError if the file is open to
    others, too short, or not text."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"token file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise ValueError(
                f"token file {path} has mode {stat.S_IMODE(st.st_mode):04o}: others may read it; "
                f"chmod 600 {path}"
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError(f"token file {path} is not ASCII text (try: {MAKE_TOKEN})") from None
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token):
        raise ValueError(
            f"token file {path} holds no token of {MIN_TOKEN}+ characters (make one: {MAKE_TOKEN})"
        )
    return token


def token_metadata(token: str) -> tuple[str, str]:
    return TOKEN_KEY, TOKEN_SCHEME + token


@dataclass(frozen=True)
class ClientCredentials:
    """What a client proves itself with: a token, and for TLS the server's CA, its own
    certificate and key (PEM bytes)."""

    token: str | None = None
    tls_ca: bytes | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    tls_server_name: str | None = None  # when the certificate names another host than dialed

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None

    @classmethod
    def from_files(
        cls,
        token_file: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_server_name: str | None = None,
    ) -> ClientCredentials:
        return cls(
            token=read_token(token_file) if token_file else None,
            tls_ca=_read(tls_ca),
            tls_cert=_read(tls_cert),
            tls_key=_read(tls_key),
            tls_server_name=tls_server_name,
        )

    @classmethod
    def from_environment(cls) -> ClientCredentials:
        """BRIDGEFS_TOKEN_FILE, BRIDGEFS_TLS_CA, BRIDGEFS_TLS_CERT, BRIDGEFS_TLS_KEY and
        BRIDGEFS_TLS_SERVER_NAME, each optional."""
        env = os.environ.get
        return cls.from_files(
            env(TOKEN_ENV) or None,
            env("BRIDGEFS_TLS_CA") or None,
            env("BRIDGEFS_TLS_CERT") or None,
            env("BRIDGEFS_TLS_KEY") or None,
            env("BRIDGEFS_TLS_SERVER_NAME") or None,
        )


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


# Call metadata on a Watch that makes it the session's hold stream: no changes flow on it, and
# the server ends the session when it ends (the client's channel closed or the client is gone),
# so a vanished client's session does not wait for the idle timeout.
HOLD_KEY = "bridgefs-hold"
