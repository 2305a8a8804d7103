"""The only code that touches /dev/fuse and the mount table: open, mount, clone, unmount."""

from __future__ import annotations

import array
import ctypes
import ctypes.util
import errno
import fcntl
import logging
import os
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

FUSE_DEV_IOC_CLONE = 0x8004E500  # _IOR(229, 0, uint32_t)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


@dataclass(frozen=True)
class MountOptions:
    fsname: str = "bridgefs"
    subtype: str = "bridgefs"
    allow_other: bool = False
    default_permissions: bool = True
    read_only: bool = False


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(mountpoint: str, options: MountOptions) -> int:
    """Mount a FUSE filesystem at ``mountpoint``; returns the /dev/fuse fd that serves it."""
    mountpoint = os.path.abspath(mountpoint)
    if os.geteuid() != 0:
        return _mount_with_fusermount(mountpoint, options)
    fd = _open_fuse_device()
    try:
        st = os.stat(mountpoint)
        opts = [
            f"fd={fd}",
            f"rootmode={stat.S_IFMT(st.st_mode):o}",
            f"user_id={os.getuid()}",
            f"group_id={os.getgid()}",
        ]
        if options.allow_other:
            opts.append("allow_other")
        if options.default_permissions:
            opts.append("default_permissions")
        flags = MS_NOSUID | MS_NODEV | (MS_RDONLY if options.read_only else 0)
        ret = _libc.mount(
            options.fsname.encode(),
            mountpoint.encode(),
            f"fuse.{options.subtype}".encode(),
            flags,
            ",".join(opts).encode(),
        )
        _check(ret, f"mount {mountpoint}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_fuse_device() -> int:
    """/dev/fuse; on a minimal system that has not loaded the module yet, load it first."""
    try:
        return os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        pass
    try:
        subprocess.run(["modprobe", "fuse"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        return os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OSError(
            errno.ENODEV, "/dev/fuse is missing: load the fuse module (modprobe fuse)"
        ) from None


def _fusermount() -> str:
    """The fusermount3 to run; a minimal guest may lack it, or lack a PATH that finds it."""
    found = shutil.which("fusermount3") or next(
        (
            p
            for p in ("/usr/bin/fusermount3", "/bin/fusermount3", "/usr/local/bin/fusermount3")
            if os.access(p, os.X_OK)
        ),
        None,
    )
    if found is None:
        raise OSError(
            errno.ENOENT,
            "fusermount3 is missing: a user other than root mounts through "
            "it (Debian: apt-get install fuse3), or mount as root",
        )
    return found


def _mount_with_fusermount(mountpoint: str, options: MountOptions) -> int:
    """Unprivileged mount: fusermount3 mounts and passes the device fd back over a socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        opts = [f"fsname={options.fsname}", f"subtype={options.subtype}"]
        if options.allow_other:
            opts.append("allow_other")
        if options.default_permissions:
            opts.append("default_permissions")
        opts.append("ro" if options.read_only else "rw")
        env = dict(os.environ, _FUSE_COMMFD=str(theirs.fileno()))
        proc = subprocess.run(
            [_fusermount(), "-o", ",".join(opts), "--", mountpoint],
            env=env,
            pass_fds=(theirs.fileno(),),
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise OSError(errno.EPERM, f"fusermount3 failed: {proc.stderr.strip()}")
        fds = array.array("i")
        _msg, ancdata, _flags, _addr = ours.recvmsg(1, socket.CMSG_LEN(fds.itemsize))
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: fds.itemsize])
        if not fds:
            raise OSError(errno.EIO, "fusermount3 passed no file descriptor")
        os.set_inheritable(fds[0], False)
        return fds[0]
    finally:
        ours.close()
        theirs.close()


def clone(fd: int) -> int:
    """A second fd on the same FUSE connection: each worker reads its own, so requests spread."""
    new = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(new, FUSE_DEV_IOC_CLONE, array.array("I", [fd]))
    except BaseException:
        os.close(new)
        raise
    return new


def connection_id(mountpoint: str) -> int | None:
    """The id of the mount's FUSE connection (/sys/fs/fuse/connections/ID).

    Read from mountinfo, not stat(): a stat of the mount point would wait for INIT.  Give the
    path as mountinfo shows it (resolved before mounting).
    """
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 4 and _unescape(parts[4]) == mountpoint:
                found = int(parts[2].split(":")[1])  # the last mount on top wins
    return found


def set_readahead(conn: int, nbytes: int) -> None:
    """Let sequential reads fetch ``nbytes`` ahead: the kernel keeps its 128 KiB default for a
    FUSE mount whatever max_readahead the daemon agreed to."""
    try:
        with open(f"/sys/class/bdi/0:{conn}/read_ahead_kb", "w") as f:
            f.write(str(nbytes // 1024))
    except OSError as exc:
        log.debug("cannot set readahead of connection %d: %s", conn, exc)


FUSECTL = "/sys/fs/fuse/connections"


def abort_connection(conn: int) -> bool:
    """Fail every pending and future request of a connection (as if the daemon had died).

    Goes through the fusectl filesystem, which is mounted here first when the system has not.
    """
    if not os.path.exists(f"{FUSECTL}/{conn}") and os.geteuid() == 0:
        ret = _libc.mount(b"fusectl", FUSECTL.encode(), b"fusectl", 0, None)
        if ret != 0:
            log.warning("cannot mount fusectl at %s: %s", FUSECTL, os.strerror(ctypes.get_errno()))
    try:
        with open(f"/sys/fs/fuse/connections/{conn}/abort", "w") as f:
            f.write("1")
        return True
    except OSError:
        return False


def unmount(mountpoint: str, lazy: bool = False) -> None:
    """Unmount; raises OSError (EBUSY when in use and not lazy)."""
    mountpoint = os.path.abspath(mountpoint)
    if os.geteuid() != 0:
        cmd = [_fusermount(), "-u"] + (["-z"] if lazy else []) + ["--", mountpoint]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            busy = "busy" in proc.stderr.lower()
            hint = ""
            if "/etc/mtab" in proc.stderr and not os.path.exists("/etc/mtab"):
                # fusermount3 checks a user's unmount against /etc/mtab; systems make it a link.
                hint = " (as root: ln -sf ../proc/self/mounts /etc/mtab)"
            raise OSError(errno.EBUSY if busy else errno.EINVAL, proc.stderr.strip() + hint)
        return
    _check(_libc.umount2(mountpoint.encode(), MNT_DETACH if lazy else 0), f"umount {mountpoint}")


def is_mounted(mountpoint: str) -> bool:
    """Whether a FUSE filesystem is mounted at ``mountpoint`` (a resolved path: never stats it)."""
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2].startswith("fuse") and _unescape(parts[1]) == mountpoint:
                return True
    return False


def _unescape(field: str) -> str:
    return (
        field.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )
