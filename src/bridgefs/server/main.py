"""Start the host file server: ``serve()`` for code and tests, ``serve_main(argv)`` for the CLI.

    bridgefs serve --share NAME=PATH[:ro] ... --listen ADDR ...

ADDR is ``tcp:HOST:PORT``, ``unix:PATH`` or ``vsock:CID:PORT`` (``vsock:any:PORT`` on a host).
grpcio cannot listen on vsock, so a vsock address is relayed to a private unix socket.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import socket
import stat
import threading
from concurrent import futures

import grpc

from bridgefs.address import Address, parse_address
from bridgefs.heap import keep_freed_memory
from bridgefs.rpc import MAX_MESSAGE, pb_grpc
from bridgefs.server.handles import Limits
from bridgefs.server.ownership import MODES as OWNERSHIP_MODES
from bridgefs.server.ownership import Config as OwnershipConfig
from bridgefs.server.ownership import parse_owner
from bridgefs.server.service import FilesService
from bridgefs.server.sessions import SessionRegistry
from bridgefs.server.shares import Share, open_shares, parse_share_spec
from bridgefs.server.watcher import WatchHub
from bridgefs.vsock import Forwarder, PrivateSocketDir

log = logging.getLogger("bridgefs.server")

SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.so_reuseport", 0),
]


def _raise_fd_limit() -> None:
    # Every node a client holds is an O_PATH fd, and with long-lived caches a VM's kernel holds
    # a node for every file a build or `git status` touched: tens of thousands.  The common soft
    # limit of 1024 is far too low; a server with the privilege also lifts the hard limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        with open("/proc/sys/fs/nr_open") as f:
            ceiling = min(int(f.read()), 1 << 20)
    except (OSError, ValueError):
        ceiling = hard
    for limit in (max(ceiling, hard), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return
        except (ValueError, OSError):
            continue


def _remove_stale_socket(path: str) -> None:
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


class BridgeServer:
    """A running server; ``addresses`` are the bound ones (tcp port 0 resolved)."""

    def __init__(
        self,
        shares: dict[str, Share],
        limits: Limits,
        max_workers: int,
        owners: OwnershipConfig | None = None,
    ):
        self.shares = shares
        self.limits = limits
        self.registry = SessionRegistry(limits)
        self.watches = WatchHub()
        self.addresses: list[str] = []
        # A Watch stream holds a worker thread for its whole life and a session has at most one,
        # so one extra thread per session keeps max_workers free for ordinary calls.
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=max_workers + limits.max_sessions, thread_name_prefix="bridgefs-rpc"
            ),
            options=SERVER_OPTIONS,
            maximum_concurrent_rpcs=max_workers * 8 + limits.max_sessions,
        )
        # The generated registration has no annotations (grpc's generator writes none).
        service = FilesService(shares, self.registry, self.watches)
        service.owners = owners or OwnershipConfig()
        pb_grpc.add_FilesServicer_to_server(  # type: ignore[no-untyped-call]
            service, self._grpc
        )
        self._forwarders: list[Forwarder] = []
        self._private: PrivateSocketDir | None = None
        self._stopped = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, name="bridgefs-reaper", daemon=True)

    def _listen(self, addr: Address) -> str | Forwarder:
        if addr.kind == "tcp":
            port = self._grpc.add_insecure_port(addr.grpc_target())
            return str(Address("tcp", host=addr.host, port=port))
        if addr.kind == "unix":
            _remove_stale_socket(addr.path)
            self._grpc.add_insecure_port(addr.grpc_target())
            return str(addr)
        if self._private is None:
            self._private = PrivateSocketDir("bridgefs-serve-")
        inner = self._private.socket_path(f"vsock-{len(self._forwarders)}.sock")
        self._grpc.add_insecure_port(f"unix:{inner}")
        fwd = Forwarder(*addr.sockaddr(), socket.AF_UNIX, inner, name=f"vsock-{addr.port}")
        self._forwarders.append(fwd)
        return fwd

    def start(self, listen: list[str]) -> BridgeServer:
        if not listen:
            raise ValueError("nothing to listen on: give at least one address")
        bound = [self._listen(parse_address(spec)) for spec in listen]
        self._grpc.start()
        try:
            for fwd in self._forwarders:
                fwd.start()
        except BaseException:
            self.stop(0)
            raise
        for item in bound:
            if isinstance(item, Forwarder):
                cid, port = item.address
                item = str(Address("vsock", cid=cid, port=port))
            self.addresses.append(item)
        self._reaper.start()
        return self

    def _reap_loop(self) -> None:
        interval = max(0.05, min(self.limits.idle_timeout / 4, 30.0))
        while not self._stopped.wait(interval):
            self.registry.reap()

    def stop(self, grace: float | None = 1.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        for fwd in self._forwarders:
            fwd.close()
        self.watches.close()  # streams would otherwise hold the grace period
        self._grpc.stop(grace).wait()
        self.registry.close_all()
        for share in self.shares.values():
            share.close()
        if self._private is not None:
            self._private.cleanup()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def __enter__(self) -> BridgeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(0)


def serve(
    shares: dict[str, tuple[str, bool]],
    listen: list[str],
    *,
    limits: Limits | None = None,
    max_workers: int = 32,
    owners: OwnershipConfig | None = None,
) -> BridgeServer:
    """Serve ``{name: (path, read_only)}`` on every address in ``listen``; returns the running
    server (``stop()`` it).  Raises OSError/ValueError for a bad share or address."""
    if not shares:
        raise ValueError("no shares to serve")
    _raise_fd_limit()
    keep_freed_memory()
    opened = open_shares(shares)
    server = BridgeServer(opened, limits or Limits(), max_workers, owners=owners)
    try:
        server.start(listen)
    except BaseException:
        server.stop(0)
        raise
    for share in opened.values():
        log.info("serving share %s", share)
    return server


def _parser() -> argparse.ArgumentParser:
    d = Limits()
    p = argparse.ArgumentParser(prog="bridgefs serve", description="Share host folders over gRPC.")
    p.add_argument(
        "--share",
        action="append",
        required=True,
        metavar="NAME=PATH[:ro]",
        help="a folder to share (repeatable); ':ro' makes it read-only",
    )
    p.add_argument(
        "--listen",
        action="append",
        required=True,
        metavar="ADDR",
        help="tcp:HOST:PORT, unix:PATH or vsock:CID:PORT (repeatable)",
    )
    p.add_argument("--workers", type=int, default=32, help="server threads (default 32)")
    p.add_argument("--max-nodes", type=int, default=d.max_nodes, help="nodes one client may hold")
    p.add_argument(
        "--max-open", type=int, default=d.max_open, help="open files one client may hold"
    )
    p.add_argument(
        "--max-inflight",
        type=int,
        default=d.max_inflight,
        help="concurrent calls one client may make",
    )
    p.add_argument("--max-sessions", type=int, default=d.max_sessions, help="clients at once")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=d.idle_timeout,
        help="seconds before a silent client's session is dropped",
    )
    o = p.add_argument_group("guest ownership")
    o.add_argument(
        "--ownership",
        choices=OWNERSHIP_MODES,
        default="overlay",
        help="overlay (default): guest owners and modes kept in a user.bridgefs.owner xattr, "
        "host files stay the server's; host: real chown/chmod (a server running as root)",
    )
    o.add_argument(
        "--default-owner",
        metavar="UID:GID",
        help="the owner guests see for files without an overlay (default: the host file's own)",
    )
    o.add_argument(
        "--ownership-host-allow-privilege",
        action="store_true",
        help="DANGEROUS, with --ownership host only: let guests create device nodes, "
        "setuid/setgid-root files and security xattrs on this host",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _owners(args: argparse.Namespace) -> OwnershipConfig:
    if args.ownership_host_allow_privilege and args.ownership != "host":
        raise ValueError("--ownership-host-allow-privilege goes with --ownership host only")
    return OwnershipConfig(
        mode=args.ownership,
        default_owner=parse_owner(args.default_owner) if args.default_owner else None,
        allow_privilege=args.ownership_host_allow_privilege,
    )


def serve_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        specs = [parse_share_spec(s) for s in args.share]
        shares = {name: (path, ro) for name, path, ro in specs}
        if len(shares) != len(specs):
            raise ValueError("a share name is given twice")
        limits = Limits(
            max_nodes=args.max_nodes,
            max_open=args.max_open,
            max_inflight=args.max_inflight,
            max_sessions=args.max_sessions,
            idle_timeout=args.idle_timeout,
        )
        server = serve(
            shares, args.listen, limits=limits, max_workers=args.workers, owners=_owners(args)
        )
    except (OSError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    for addr in server.addresses:
        print(f"bridgefs: listening on {addr}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    log.info("stopping")
    server.stop(2.0)
    return 0
