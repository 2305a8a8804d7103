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
from bridgefs.credentials import MAKE_TOKEN, read_token
from bridgefs.heap import keep_freed_memory
from bridgefs.rpc import MAX_MESSAGE, pb_grpc
from bridgefs.server import bounds, sandbox
from bridgefs.server.auth import Auth, TokenInterceptor, cid_check, uid_check
from bridgefs.server.handles import Limits
from bridgefs.server.ownership import MODES as OWNERSHIP_MODES
from bridgefs.server.ownership import Config as OwnershipConfig
from bridgefs.server.ownership import parse_owner
from bridgefs.server.service import FilesService
from bridgefs.server.sessions import SessionRegistry
from bridgefs.server.shares import Share, open_shares, parse_share_spec
from bridgefs.server.watcher import WatchHub
from bridgefs.vsock import Forwarder, PrivateSocketDir, bind_unix

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


def check_listeners(listen: list[str], auth: Auth, insecure: bool) -> None:
    """ValueError for a tcp: or vsock: listener that anyone who can reach it could use."""
    if insecure or auth.token is not None:
        return
    for spec in listen:
        kind = parse_address(spec).kind
        if kind == "vsock" or (kind == "tcp" and auth.tls_client_ca is None):
            raise ValueError(
                f"{spec} would let anyone who reaches it read the shares: give --token-file "
                f"(make one: {MAKE_TOKEN})"
                + (" or --tls-cert/--tls-key/--tls-client-ca" if kind == "tcp" else "")
                + ", or --insecure if every peer that can connect is trusted"
            )


def _threads(max_workers: int, limits: Limits) -> int:
    # A Watch stream and a hold stream each keep a worker thread for their whole life, and a
    # session has at most one of each, so two threads per session keep max_workers free for
    # ordinary calls.
    return max_workers + 2 * limits.max_sessions


class BridgeServer:
    """A running server; ``addresses`` are the bound ones (tcp port 0 resolved)."""

    def __init__(
        self,
        shares: dict[str, Share],
        limits: Limits,
        max_workers: int,
        auth: Auth | None = None,
        owners: OwnershipConfig | None = None,
    ):
        self.shares = shares
        self.auth = auth or Auth()
        self.limits = bounds.fit(limits, _threads(max_workers, limits))
        room = bounds.room_of(_threads(max_workers, limits))  # as fit() counted it
        pool = bounds.DescriptorPool(room, self.limits.max_sessions) if room is not None else None
        self.registry = SessionRegistry(self.limits, pool)
        self.watches = WatchHub()
        self.addresses: list[str] = []
        threads = _threads(max_workers, self.limits)
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bridgefs-rpc"),
            options=SERVER_OPTIONS,
            maximum_concurrent_rpcs=max_workers * 8 + 2 * self.limits.max_sessions,
            interceptors=[TokenInterceptor(self.auth.token)] if self.auth.token else None,
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
            if self.auth.tls:
                port = self._grpc.add_secure_port(
                    addr.grpc_target(), self.auth.server_credentials()
                )
            else:
                port = self._grpc.add_insecure_port(addr.grpc_target())
            return str(Address("tcp", host=addr.host, port=port))
        if addr.kind == "unix" and not self.auth.allow_uids:
            # 0600: the kernel lets only this uid (and root) connect, which is the default
            # policy, so no relay is needed to check the peer.
            _remove_stale_socket(addr.path)
            bind_unix(addr.path, 0o600, lambda p: self._grpc.add_insecure_port(f"unix:{p}"))
            return str(addr)
        if self._private is None:
            self._private = PrivateSocketDir("bridgefs-serve-")
        inner = self._private.socket_path(f"{addr.kind}-{len(self._forwarders)}.sock")
        self._grpc.add_insecure_port(f"unix:{inner}")
        if addr.kind == "unix":
            # Other uids may connect (0666), and the relay checks each peer's uid before it
            # relays a byte.
            _remove_stale_socket(addr.path)
            fwd = Forwarder(
                socket.AF_UNIX,
                addr.path,
                socket.AF_UNIX,
                inner,
                name="unix",
                peer_check=uid_check(self.auth.allow_uids),
                socket_mode=0o666,
            )
        else:
            fwd = Forwarder(
                *addr.sockaddr(),
                socket.AF_UNIX,
                inner,
                name=f"vsock-{addr.port}",
                peer_check=cid_check(self.auth.allow_cids),
            )
        self._forwarders.append(fwd)
        return fwd

    def start(self, listen: list[str], sandbox: str = "off") -> BridgeServer:
        """Bind every address, restrict the process with ``sandbox`` (sandbox.apply's modes),
        then serve."""
        if not listen:
            raise ValueError("nothing to listen on: give at least one address")
        bound = [self._listen(parse_address(spec)) for spec in listen]
        try:
            for fwd in self._forwarders:
                fwd.bind()
            self.sandboxed = self._restrict(sandbox)
        except BaseException:
            self.stop(0)
            raise
        self._grpc.start()
        try:
            for fwd in self._forwarders:
                fwd.start()
        except BaseException:
            self.stop(0)
            raise
        for item in bound:
            if isinstance(item, Forwarder):
                if item.listen_family == socket.AF_UNIX:
                    item = f"unix:{item.listen_addr}"
                else:
                    cid, port = item.address
                    item = str(Address("vsock", cid=cid, port=port))
            self.addresses.append(item)
        self._reaper.start()
        return self

    def _restrict(self, mode: str) -> bool:
        # Sockets are bound by now; the sandbox allows the shares, the runtime, and the private
        # socket folder (so that stop() can clear it).
        shares = list(self.shares.values())
        private = [self._private.path] if self._private is not None else []
        return sandbox.apply(
            mode,
            [s.path for s in shares if not s.read_only],
            [s.path for s in shares if s.read_only],
            writable=private,
            removable=[os.path.dirname(p) for p in private],
        )

    def _reap_loop(self) -> None:
        interval = max(0.05, min(self.limits.idle_timeout / 4, self.limits.hold_grace / 4, 30.0))
        while not self._stopped.wait(interval):
            self.registry.reap()

    def stop(self, grace: float | None = 1.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        for fwd in self._forwarders:
            fwd.close()
        self.registry.stopping.set()  # hold streams end
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
    auth: Auth | None = None,
    insecure: bool = False,
    owners: OwnershipConfig | None = None,
    sandbox_mode: str = "off",
) -> BridgeServer:
    """Serve ``{name: (path, read_only)}`` on every address in ``listen``; returns the running
    server (``stop()`` it).  Raises OSError/ValueError for a bad share or address, and
    ValueError for a tcp: or vsock: listener without a token or TLS unless ``insecure``.
    ``sandbox_mode`` (sandbox.apply's modes) is "off" here: a sandbox restricts the calling
    thread for good, which only a process that is nothing but a server wants (the CLI's
    default is "auto")."""
    if not shares:
        raise ValueError("no shares to serve")
    auth = auth or Auth()
    opened = open_shares(shares)
    try:
        check_listeners(listen, auth, insecure)
    except ValueError:
        for share in opened.values():
            share.close()
        raise
    _raise_fd_limit()
    keep_freed_memory()
    server = BridgeServer(opened, limits or Limits(), max_workers, auth, owners)
    try:
        server.start(listen, sandbox_mode)
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
    p.add_argument(
        "--hold-grace",
        type=float,
        default=d.hold_grace,
        help="seconds a session outlives its client's connection (one back by then keeps it)",
    )
    p.add_argument(
        "--max-client-sessions",
        type=int,
        default=d.max_client_sessions,
        help="sessions one client (TLS subject, else peer host) may hold",
    )
    p.add_argument(
        "--max-client-inflight",
        type=int,
        default=d.max_client_inflight,
        help="concurrent calls all of one client's sessions may make",
    )
    a = p.add_argument_group("who may connect")
    a.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"a secret (mode 0600) every call must carry; make one: {MAKE_TOKEN}",
    )
    a.add_argument("--tls-cert", metavar="PEM", help="the server's certificate (tcp: listeners)")
    a.add_argument("--tls-key", metavar="PEM", help="the key of --tls-cert")
    a.add_argument(
        "--tls-client-ca",
        metavar="PEM",
        help="the CA that signs client certificates (clients must present one)",
    )
    a.add_argument(
        "--allow-uid",
        type=int,
        action="append",
        default=[],
        metavar="UID",
        help="unix: listeners also accept this uid (repeatable; own uid and root always)",
    )
    a.add_argument(
        "--allow-cid",
        type=int,
        action="append",
        default=[],
        metavar="CID",
        help="vsock: listeners accept only these VMs (repeatable; default any)",
    )
    a.add_argument(
        "--insecure",
        action="store_true",
        help="allow tcp:/vsock: listeners without a token or TLS (every peer is trusted)",
    )
    a.add_argument(
        "--sandbox",
        choices=sandbox.MODES,
        default="auto",
        help="restrict the server with Landlock to its shares and runtime: required (refuse "
        "to start without it), auto (default: where the kernel has it), off",
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


def _auth(args: argparse.Namespace) -> Auth:
    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
    return Auth(
        token=read_token(args.token_file) if args.token_file else None,
        tls_cert=read(args.tls_cert),
        tls_key=read(args.tls_key),
        tls_client_ca=read(args.tls_client_ca),
        allow_uids=frozenset(args.allow_uid),
        allow_cids=frozenset(args.allow_cid),
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
            hold_grace=args.hold_grace,
            max_client_sessions=args.max_client_sessions,
            max_client_inflight=args.max_client_inflight,
        )
        server = serve(
            shares,
            args.listen,
            limits=limits,
            max_workers=args.workers,
            auth=_auth(args),
            insecure=args.insecure,
            owners=_owners(args),
            sandbox_mode=args.sandbox,
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
