"""The host side: serves shared folders to bridgefs clients over gRPC."""

from bridgefs.server.handles import Limits
from bridgefs.server.main import BridgeServer, serve, serve_main

__all__ = ["BridgeServer", "Limits", "serve", "serve_main"]
