"""A Landlock sandbox behind the confinement: the server restricts itself to its share roots
(read-only where the share is) and to what it needs to run, so that a bug in the confinement
(at.py, confine.py) can no longer reach a file outside a share.

Landlock restricts the calling thread and every thread it starts afterwards, so ``apply`` is
called on the thread that goes on to start the gRPC server and its workers, after the listening
sockets are bound (binding needs rights the sandbox does not give) and before any call is
served.  Threads started earlier (a serial relay copying bytes) stay outside; the log says so.
The system calls are in bridgefs.landlock; this module says what the server may reach.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import threading
from collections.abc import Iterable

from bridgefs import landlock
from bridgefs.landlock import EXECUTE, READ_DIR, READ_FILE, REMOVE_DIR, WRITE_FILE

log = logging.getLogger("bridgefs.server")

READ = READ_FILE | READ_DIR
RUN = READ | EXECUTE

# Devices the runtime opens by name.
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full")
# What Python, its libraries and the C library read at run time: code and shared libraries, the
# loader's cache, time zone and name service files, this process's own /proc entries, and the
# CPU and memory facts thread pools look at.  Not /etc as a whole (a root server could read
# /etc/shadow) and not /proc as a whole (other processes' environ).
SYSTEM = (
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/passwd",
    "/etc/group",
    "/proc/self",
    "/proc/cpuinfo",
    "/proc/stat",
    "/proc/meminfo",
    "/sys/devices/system/cpu",
    "/sys/devices/system/node",
)

MODES = ("required", "auto", "off")


def runtime_paths() -> list[str]:
    """Where this server's Python and its packages live (read and execute)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    here = os.path.abspath(__file__)
    paths.add(os.path.dirname(os.path.dirname(os.path.dirname(here))))  # bridgefs itself
    # Not the working directory (python -m puts it on sys.path): it may hold anything.
    paths.update(p for p in sys.path if p and os.path.abspath(p) != os.getcwd())
    return sorted(paths)


def restrict(
    read_write: Iterable[str],
    read_only: Iterable[str],
    *,
    removable: Iterable[str] = (),
    writable: Iterable[str] = (),
) -> int:
    """Restrict this thread (and threads it starts) to ``read_write`` and ``read_only`` trees,
    the Python runtime and the system's read-only files; ``writable`` trees may be changed
    (a private socket directory), and empty folders may be removed from ``removable`` ones.
    Returns the ABI; OSError if Landlock is unavailable."""
    rw = landlock.all_rights() & ~EXECUTE
    rules: list[tuple[str, int]] = [(p, rw) for p in read_write]
    rules += [(p, READ) for p in read_only]
    rules += [(p, rw) for p in writable]
    rules += [(p, REMOVE_DIR) for p in removable]
    rules += [(p, RUN) for p in (*runtime_paths(), *SYSTEM)]
    rules += [(p, READ_FILE | WRITE_FILE) for p in DEVICES]
    return landlock.restrict(rules)


def abi_version() -> int:
    """The kernel's Landlock ABI version; OSError when Landlock is missing or disabled."""
    return landlock.abi_version()


def apply(
    mode: str,
    read_write: list[str],
    read_only: list[str],
    *,
    removable: Iterable[str] = (),
    writable: Iterable[str] = (),
) -> bool:
    """``restrict`` as ``--sandbox MODE`` asks: "off" never, "auto" where the kernel has
    Landlock, "required" or an OSError.  Logs whether the sandbox is on; True if it is."""
    if mode not in MODES:
        raise ValueError(f"--sandbox is one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off":
        log.warning("sandbox off (--sandbox off): only the confinement keeps calls in the shares")
        return False
    try:
        abi_version()  # the reason to give when there is none
        abi = restrict(read_write, read_only, removable=removable, writable=writable)
    except OSError as exc:
        why = (
            "the kernel has no Landlock (or it is disabled)"
            if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP)
            else str(exc)
        )
        if mode == "required":
            raise OSError(exc.errno, f"--sandbox required, but cannot sandbox: {why}") from None
        log.warning("sandbox off: %s; only the confinement keeps calls in the shares", why)
        return False
    others = threading.active_count() - 1
    log.info(
        "sandbox on (Landlock ABI %d): the server reaches only its %d share(s) and its runtime%s",
        abi,
        len(read_write) + len(read_only),
        f"; {others} thread(s) started before it (relays) are outside it" if others else "",
    )
    return True
