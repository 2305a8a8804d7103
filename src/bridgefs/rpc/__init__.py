"""The bridgefs.v1 gRPC contract: generated modules plus the constants both ends agree on.

``pb`` holds the messages and ``pb_grpc`` the stub and servicer base, both generated from
proto/bridgefs/v1/files.proto by scripts/gen_proto.py (never edit them by hand).
"""

from __future__ import annotations

from bridgefs.rpc.bridgefs.v1 import files_pb2 as pb
from bridgefs.rpc.bridgefs.v1 import files_pb2_grpc as pb_grpc

PROTOCOL_VERSION = 1

# Every call after Handshake carries the session token under this gRPC metadata key.
SESSION_KEY = "bridgefs-session"

# The largest Read/Write payload.  Messages may carry that plus framing, and a ReadDir batch is
# bounded well below it, so both ends accept MAX_MESSAGE: 1 MiB of data and ample headroom.
MAX_IO_SIZE = 1 << 20
MAX_MESSAGE = MAX_IO_SIZE * 2 + (64 << 10)

# Features a server of this version implements; a client lists the ones it cannot do without.
CAPABILITIES = (
    "readdirplus",
    "renameat2",
    "xattr",
    "fallocate",
    "lseek-data-hole",
    "copy-file-range",
    "forget-batch",
    "node-io",  # fh 0 in I/O requests addresses the node itself; ListDir
    "release-batch",  # Release takes more_fhs
)

ROOT_HANDLE = 1

__all__ = [
    "pb",
    "pb_grpc",
    "PROTOCOL_VERSION",
    "SESSION_KEY",
    "MAX_IO_SIZE",
    "MAX_MESSAGE",
    "CAPABILITIES",
    "ROOT_HANDLE",
]
