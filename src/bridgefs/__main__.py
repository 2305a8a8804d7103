"""The ``bridgefs`` command: serve shares on a host, mount them in a VM, or both at once."""

from __future__ import annotations

import os
import sys

from . import __version__

# argparse, logging and typing are imported where they are used: git starts `bridgefs
# fsmonitor` on every status, and it needs none of them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def _add_fuse_options(p: argparse.ArgumentParser) -> None:
    import argparse

    p.add_argument("--workers", type=int, default=8, help="threads reading /dev/fuse (default 8)")
    p.add_argument(
        "--allow-other",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let users other than the one mounting use the mount (default: on when "
        "mounting as root, so a VM's containers of any uid can reach the share; "
        "the kernel checks each access against the owners and modes shown)",
    )
    p.add_argument("--read-only", action="store_true", help="mount read-only")
    p.add_argument(
        "--writeback-cache",
        action="store_true",
        help="let the kernel gather writes in its page cache (it then trusts its own "
        "size and mtime of cached files over the host's: not with --no-events)",
    )


def _add_remote_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--uid", type=int, help="present every file as owned by this uid")
    p.add_argument("--gid", type=int, help="present every file as owned by this gid")
    p.add_argument(
        "--entry-timeout",
        type=float,
        default=1.0,
        help="seconds the kernel may trust a name (default 1)",
    )
    p.add_argument(
        "--attr-timeout",
        type=float,
        default=1.0,
        help="seconds the kernel may trust attributes (default 1)",
    )
    p.add_argument(
        "--cache-timeout",
        type=float,
        default=3600.0,
        help="how long caches live while host changes are streamed (default 3600 s)",
    )
    p.add_argument(
        "--no-events",
        action="store_true",
        help="do not follow host changes (short timeouts only, no inotify replay)",
    )
    p.add_argument(
        "--token-file", metavar="FILE", help="the server's secret (mode 0600), sent with every call"
    )


def _add_tls_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tls-ca", metavar="PEM", help="tcp: with TLS: the CA of the server's certificate"
    )
    p.add_argument("--tls-cert", metavar="PEM", help="this client's certificate")
    p.add_argument("--tls-key", metavar="PEM", help="the key of --tls-cert")
    p.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="the name in the server's certificate, if not the host dialed",
    )


def _use_credentials(args: argparse.Namespace) -> None:
    """Hand --token-file and the TLS files to the client session (through the environment,
    which `mount` without --foreground also passes on), checking them first so a bad file fails
    before anything is mounted."""
    import os

    from .credentials import TOKEN_ENV, ClientCredentials

    named = {
        TOKEN_ENV: args.token_file,
        "BRIDGEFS_TLS_CA": getattr(args, "tls_ca", None),
        "BRIDGEFS_TLS_CERT": getattr(args, "tls_cert", None),
        "BRIDGEFS_TLS_KEY": getattr(args, "tls_key", None),
    }
    for key, path in named.items():
        if path:
            os.environ[key] = os.path.abspath(path)
    if getattr(args, "tls_server_name", None):
        os.environ["BRIDGEFS_TLS_SERVER_NAME"] = args.tls_server_name
    ClientCredentials.from_environment()


def _fuse_config(args: argparse.Namespace):

    from .fuse.device import MountOptions
    from .fuse.negotiate import Tuning

    allow_other = args.allow_other
    if allow_other is None:
        # Root mounts for everyone: a share a VM's containers cannot reach is no share.  Others
        # need user_allow_other in /etc/fuse.conf for it, so they ask for it themselves.
        allow_other = os.geteuid() == 0
    options = MountOptions(
        allow_other=allow_other, default_permissions=True, read_only=args.read_only
    )
    return options, Tuning(writeback_cache=args.writeback_cache)


def cmd_memfs(args: argparse.Namespace) -> int:
    from .daemon import serve_mount
    from .memfs import MemFS

    options, tuning = _fuse_config(args)
    serve_mount(MemFS(), args.mountpoint, workers=args.workers, options=options, tuning=tuning)
    return 0


def _remote_fs(args: argparse.Namespace, address: str, share: str):
    from .client.watched import WatchedShare

    return WatchedShare(
        address,
        share,
        entry_timeout=args.entry_timeout,
        attr_timeout=args.attr_timeout,
        uid=args.uid,
        gid=args.gid,
        read_only=args.read_only,
        watch=not args.no_events,
        long_timeout=args.cache_timeout,
        writeback_cache=args.writeback_cache,
    )


def cmd_mount(args: argparse.Namespace) -> int:
    from .daemon import serve_mount, spawn_background

    _use_credentials(args)
    if not args.foreground:
        return spawn_background(sys.argv[1:] + ["--foreground"], args.mountpoint)
    fs = _remote_fs(args, args.address, args.share)
    options, tuning = _fuse_config(args)
    serve_mount(fs, args.mountpoint, workers=args.workers, options=options, tuning=tuning)
    return 0


def cmd_umount(args: argparse.Namespace) -> int:
    import logging
    import os

    from .fuse import device

    try:
        device.unmount(os.path.realpath(args.mountpoint), lazy=args.lazy)
    except OSError as exc:
        hint = (
            " (files are open there; --lazy detaches it now)"
            if "busy" in str(exc).lower() or getattr(exc, "errno", 0) == 16
            else ""
        )
        logging.getLogger("bridgefs").error("cannot unmount %s: %s%s", args.mountpoint, exc, hint)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import private_server, serve_mount

    options, tuning = _fuse_config(args)
    _use_credentials(args)
    with private_server(args.hostdir, token_file=args.token_file) as address:
        fs = _remote_fs(args, address, "share")
        serve_mount(fs, args.mountpoint, workers=args.workers, options=options, tuning=tuning)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from .control import ask

    answer = ask(args.mountpoint, "status")
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        for key, value in answer.items():
            print(f"{key:<16}{value}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import json

    from .control import ask

    answer = ask(args.mountpoint, "stats", reset=args.reset)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(f"{'request':<16}{'count':>10}{'total ms':>12}{'mean us':>10}{'errors':>8}")
    for op, s in answer.get("fuse", {}).items():
        mean = s["total_ms"] * 1000 / s["count"] if s["count"] else 0
        print(f"{op:<16}{s['count']:>10}{s['total_ms']:>12.1f}{mean:>10.0f}{s['errors']:>8}")
    for op, s in answer.get("rpc", {}).items():
        print(f"rpc {op:<12}{s['count']:>10}{s['total_ms']:>12.1f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(prog="bridgefs", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bridgefs {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every connection and error"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("memfs", help="mount an in-memory filesystem (for trying FUSE out)")
    p.add_argument("mountpoint")
    _add_fuse_options(p)
    p.set_defaults(func=cmd_memfs)

    # Listed for --help; main() hands "serve ..." to the server's own parser before this one.
    sub.add_parser(
        "serve", help="serve host folders (run on the host): serve --help", add_help=False
    )

    p = sub.add_parser("mount", help="mount a served share (run in the VM)")
    p.add_argument(
        "address",
        help="vsock:CID:PORT, serial:NAME (virtio-serial port), unix:PATH or tcp:HOST:PORT",
    )
    p.add_argument("share", help="the share's name, as given to serve --share NAME=PATH")
    p.add_argument("mountpoint")
    p.add_argument(
        "-f",
        "--foreground",
        action="store_true",
        help="stay in the foreground (default: return once mounted)",
    )
    _add_fuse_options(p)
    _add_remote_options(p)
    _add_tls_options(p)
    p.set_defaults(func=cmd_mount)

    p = sub.add_parser("umount", help="unmount a bridgefs mount")
    p.add_argument("mountpoint")
    p.add_argument("-z", "--lazy", action="store_true", help="detach now even if busy")
    p.set_defaults(func=cmd_umount)

    p = sub.add_parser("run", help="share HOSTDIR at MOUNTPOINT on this machine, until Ctrl-C")
    p.add_argument("hostdir")
    p.add_argument("mountpoint")
    _add_fuse_options(p)
    _add_remote_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="whether host changes flow, and the cache mode")
    p.add_argument("mountpoint")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    # Listed for --help; main() runs "fsmonitor ..." before this parser is made.
    sub.add_parser(
        "fsmonitor",
        help="git's core.fsmonitor hook (protocol 2) for a repository "
        "on a mount: fsmonitor 2 TOKEN",
        add_help=False,
    )

    p = sub.add_parser("stats", help="requests a mount received and the round trips they cost")
    p.add_argument("mountpoint")
    p.add_argument("--reset", action="store_true", help="start counting again from zero")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fsmonitor"]:  # run by git on every status: no parser, nothing else imported
        from .fsmonitor import main as fsmonitor_main

        return fsmonitor_main(argv[1:])
    if argv[:1] == ["serve"]:  # the server has its own parser (it also runs without the client)
        from .serial import serve_main  # the server's, with serial: listens relayed in front

        return serve_main(argv[1:])
    import logging

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "writeback_cache", False) and getattr(args, "no_events", False):
        # The kernel keeps its own size and mtime of files it caches for writeback: only the
        # change stream tells it the host changed one.  Without it a host append would stay
        # invisible, so the pair is refused rather than served wrong.
        parser.error(
            "--writeback-cache needs host changes followed: not with --no-events (files the "
            "host changed would keep the size and mtime the VM last had for them)"
        )
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="bridgefs: %(levelname)s %(message)s",
    )
    try:
        return args.func(args)
    except (OSError, ValueError) as exc:
        logging.getLogger("bridgefs").error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
