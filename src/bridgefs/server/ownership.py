"""Guest ownership of host files: who the guest sees as a file's owner, and what the host gets.

A VM's containers run as many users, while the server runs as one host user.  Planting their
ids and modes on the host would hand the guest the host's privileges (a guest root could make a
setuid-root file or a device node there), and not keeping them breaks every guest program that
chmods what it makes.  So, by default, a share keeps them in an overlay (``Overlay``): one
``user.bridgefs.owner`` extended attribute of the host file holds the guest-visible uid, gid,
mode bits (setuid, setgid and sticky included), file type and rdev.  The host file stays owned
by the server's user, with ordinary modes the server can always use (owner read and write,
search for directories), no world write, no setuid or setgid bit and no device type: a guest
mknod of a device, FIFO or socket makes an empty regular file the guest sees as that node.
Files without an overlay show the host file's own ids (or a configured owner) and mode.

User xattrs cannot be set on symlinks, so a symlink's guest owner, when it is not the host's,
is kept by the directory holding it: ``user.bridgefs.links``, one line per name.

Two other policies:

* ``Host`` (``--ownership host``): a server that runs as root to set real ownership (a CI host)
  applies chown and chmod for real, and makes nodes owned by their callers; it still refuses
  device nodes, setuid/setgid-root files and security xattrs unless ``allow_privilege`` (the
  ``--ownership-host-allow-privilege`` option) says otherwise.
* ``Mapped``: where the host filesystem refuses user xattrs (vfat, some network filesystems),
  every file shows the host's mode without setuid/setgid bits and the host's ids (or the
  configured owner); chmod changes the host's permission bits, chown to any other owner and
  special nodes are refused (EPERM).

Permission checks are not made here: the guest kernel makes them (default_permissions) against
what ``view`` shows.  A guest never writes ``security.*``, ``trusted.*`` or ``system.*`` xattrs on
the host (EOPNOTSUPP, as from a filesystem without them), and never sees or touches the
overlay's own ``user.bridgefs.*`` attributes.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from dataclasses import dataclass

from bridgefs.server import confine, syscalls

log = logging.getLogger("bridgefs.server")

OWNER_XATTR = b"user.bridgefs.owner"
LINKS_XATTR = b"user.bridgefs.links"
HIDDEN_PREFIX = b"user.bridgefs."
GUARDED_PREFIXES = (b"security.", b"trusted.", b"system.")
_VERSION = b"v1"
_SUID_SGID = stat.S_ISUID | stat.S_ISGID
_SPECIAL = (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK)
_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP)
MODES = ("overlay", "host")
# A directory's symlink table is read, changed and written back whole, by any session.
_LINKS_LOCK = threading.Lock()
# Overlay records read, by (st_dev, st_ino): (st_ctime_ns when read, record or None).  Every
# xattr change moves ctime, so a record whose ctime is unchanged is still the file's; the server
# records its own writes here at once, since ctime's clock is coarser than a create-and-chmod.
# Shared by every session (each one's writes are the others' news); emptied when full.
_RECORDS: dict[tuple[int, int], tuple[int, Record | None]] = {}
_RECORDS_MAX = 1 << 16


@dataclass(frozen=True, slots=True)
class Caller:
    """The guest ids a request was made with (see the contract's Caller)."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()

    def in_group(self, gid: int) -> bool:
        # root may keep S_ISGID anywhere (CAP_FSETID), as the kernel lets it.
        return self.uid == 0 or gid == self.gid or gid in self.groups


@dataclass(frozen=True, slots=True)
class Record:
    """What the overlay keeps of one node: ``mode`` includes the file type."""

    uid: int
    gid: int
    mode: int
    rdev: int = 0

    def encode(self) -> bytes:
        # Text, so that `getfattr -d` on the host tells what a guest sees.
        return b"%s %d %d %o %d" % (_VERSION, self.uid, self.gid, self.mode, self.rdev)

    @staticmethod
    def decode(raw: bytes) -> Record | None:
        parts = raw.split()
        if len(parts) != 5 or parts[0] != _VERSION:
            return None  # not ours, or a later version's: the host's own values show
        try:
            uid, gid, rdev = int(parts[1]), int(parts[2]), int(parts[4])
            mode = int(parts[3], 8)
        except ValueError:
            return None
        if not (0 <= uid < 1 << 32 and 0 <= gid < 1 << 32 and 0 <= mode < 1 << 32):
            return None
        return Record(uid, gid, mode, rdev)


@dataclass(frozen=True, slots=True)
class Config:
    """The server's choice (``serve --ownership``, ``--default-owner``)."""

    mode: str = "overlay"
    default_owner: tuple[int, int] | None = None  # None: the host file's own ids
    allow_privilege: bool = False  # host mode only: devices, setuid-root, security xattrs

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"ownership {self.mode!r}: expected one of {', '.join(MODES)}")


def parse_owner(spec: str) -> tuple[int, int]:
    """``UID:GID`` -> (uid, gid)."""
    uid, sep, gid = spec.partition(":")
    try:
        if sep and uid.isdigit() and gid.isdigit():
            return int(uid), int(gid)
    except ValueError:
        pass
    raise ValueError(f"bad owner {spec!r}: expected UID:GID")


def restat(
    st: os.stat_result, *, mode: int, uid: int, gid: int, rdev: int | None = None
) -> os.stat_result:
    """``st`` with the guest-visible mode, owner and rdev put in."""
    fields = list(st)
    fields[0], fields[4], fields[5] = mode, uid, gid
    extra = {
        "st_atime": st.st_atime,
        "st_mtime": st.st_mtime,
        "st_ctime": st.st_ctime,
        "st_atime_ns": st.st_atime_ns,
        "st_mtime_ns": st.st_mtime_ns,
        "st_ctime_ns": st.st_ctime_ns,
        "st_blksize": st.st_blksize,
        "st_blocks": st.st_blocks,
        "st_rdev": st.st_rdev if rdev is None else rdev,
    }
    return os.stat_result(fields, extra)


def host_perm(mode: int) -> int:
    """The permission bits a host file of guest ``mode`` gets under the overlay: the guest's
    read/write/execute bits but world write (a guest's 0777 or /tmp-like 1777 directory would
    otherwise be one every host user may empty), never setuid/setgid/sticky, and always what
    the server needs."""
    need = 0o700 if stat.S_ISDIR(mode) else 0o600
    return (mode & 0o775) | need


def _read(fd: int, name: bytes) -> bytes | None:
    try:
        return os.getxattr(confine.proc_path(fd), name)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, *_NO_XATTRS, errno.EACCES, errno.EPERM):
            return None
        raise


def _set_host_perm(fd: int, st: os.stat_result, perm: int) -> None:
    if stat.S_IMODE(st.st_mode) != perm:
        os.chmod(confine.proc_path(fd), perm)


def _new_owner(caller: Caller, parent: os.stat_result, mode: int) -> tuple[int, int, int]:
    """(uid, gid, mode) of a node ``caller`` makes in ``parent`` (its guest view), as Linux
    gives them: a setgid directory's group, and its setgid bit to subdirectories."""
    setgid_dir = bool(parent.st_mode & stat.S_ISGID)
    gid = parent.st_gid if setgid_dir else caller.gid
    if stat.S_ISDIR(mode) and setgid_dir:
        mode |= stat.S_ISGID
    elif mode & stat.S_ISGID and not stat.S_ISDIR(mode) and not caller.in_group(gid):
        mode &= ~stat.S_ISGID
    return caller.uid, gid, mode


class Ownership:
    """The policy of one share; the base class passes host ownership through untouched."""

    name = "host"
    links_by_dir = False  # whether a symlink's owner is kept by its directory

    def __init__(self, config: Config, read_only: bool):
        self.config = config
        self.read_only = read_only

    # --- what the guest sees ----------------------------------------------------------------------
    def view(self, fd: int, st: os.stat_result) -> os.stat_result:
        return st

    def view_link(self, dirfd: int, name: bytes, st: os.stat_result) -> os.stat_result:
        """A symlink ``name`` in ``dirfd``, whose own xattrs cannot hold an overlay."""
        return st

    def check_openable(self, fd: int, st: os.stat_result) -> None:
        """Refuse to open what the guest sees as a special file (ENXIO, as for a host one)."""
        if stat.S_ISREG(st.st_mode) and stat.S_IFMT(self.view(fd, st).st_mode) in _SPECIAL:
            raise confine.Refused(errno.ENXIO, "open of a special file's placeholder")

    # --- what the host gets -----------------------------------------------------------------------
    def host_node(self, mode: int) -> int:
        """The type and permission bits to make a node of guest ``mode`` with on the host."""
        return mode & ~_SUID_SGID

    def made(
        self, fd: int, caller: Caller | None, parent: os.stat_result, mode: int, rdev: int
    ) -> None:
        """After a node of guest ``mode`` (type included) was made: give it its owner and mode
        (``parent`` is the directory's guest view).  Here: the host permission bits the process
        umask may have masked."""
        _set_host_perm(fd, os.fstat(fd), stat.S_IMODE(self.host_node(mode)))

    def made_link(self, dirfd: int, name: bytes, fd: int, caller: Caller | None) -> None:
        """After a symlink ``name`` (the node ``fd``) was made in ``dirfd``."""

    def change(
        self,
        fd: int,
        st: os.stat_result,
        mode: int | None,
        uid: int | None,
        gid: int | None,
        kill_suidgid: bool,
    ) -> None:
        """chown/chmod of the node ``fd`` (a regular file, directory or special file)."""

    def change_link(self, dirfd: int, name: bytes, st: os.stat_result, uid: int, gid: int) -> None:
        """lchown of the symlink ``name`` in ``dirfd``."""

    def link_gone(self, dirfd: int, name: bytes) -> None:
        """The symlink ``name`` left ``dirfd`` (unlinked, or replaced by a rename)."""

    def link_moved(self, olddir: int, name: bytes, newdir: int, new_name: bytes) -> None:
        """The symlink ``name`` of ``olddir`` is ``new_name`` in ``newdir`` now."""

    # --- extended attributes ----------------------------------------------------------------------
    def check_xattr_write(self, name: bytes) -> None:
        if name.startswith(HIDDEN_PREFIX):
            raise OSError(errno.EPERM, "the ownership overlay is the server's")
        if name.startswith(GUARDED_PREFIXES) and not self.config.allow_privilege:
            raise OSError(errno.EOPNOTSUPP, "security xattrs are not written on the host")

    def check_xattr_read(self, name: bytes) -> None:
        if name.startswith(HIDDEN_PREFIX):
            raise OSError(errno.ENODATA, "no such attribute")

    def visible_xattrs(self, names: list[bytes]) -> list[bytes]:
        return [n for n in names if not n.startswith(HIDDEN_PREFIX)]

    def _default_ids(self, st: os.stat_result) -> tuple[int, int]:
        owner = self.config.default_owner
        return (st.st_uid, st.st_gid) if owner is None else owner


class Host(Ownership):
    """``--ownership host``: real ownership, short of host privilege."""

    name = "host"

    def host_node(self, mode: int) -> int:
        fmt = stat.S_IFMT(mode)
        if fmt in (stat.S_IFCHR, stat.S_IFBLK) and not self.config.allow_privilege:
            raise confine.Refused(errno.EPERM, "a device node on the host")
        return mode & ~_SUID_SGID  # set after the chown, which would clear them

    def _check_privilege(self, mode: int, uid: int, gid: int) -> None:
        if self.config.allow_privilege or stat.S_ISDIR(mode):
            return
        if (mode & stat.S_ISUID and uid == 0) or (mode & stat.S_ISGID and gid == 0):
            raise confine.Refused(errno.EPERM, "a setuid/setgid-root file on the host")

    def made(
        self, fd: int, caller: Caller | None, parent: os.stat_result, mode: int, rdev: int
    ) -> None:
        if caller is None:
            st = os.fstat(fd)
            uid, gid = st.st_uid, st.st_gid
        else:
            uid, gid, mode = _new_owner(caller, parent, mode)
            syscalls.fchown_node(fd, uid, gid)
        try:
            self._check_privilege(mode, uid, gid)
        except confine.Refused:
            mode &= ~_SUID_SGID  # made already: it stays, without the privilege
        os.chmod(confine.proc_path(fd), mode & 0o7777)

    def made_link(self, dirfd: int, name: bytes, fd: int, caller: Caller | None) -> None:
        if caller is not None:
            parent = os.fstat(dirfd)
            uid, gid, _ = _new_owner(caller, parent, stat.S_IFLNK | 0o777)
            syscalls.fchown_node(fd, uid, gid)

    def change(
        self,
        fd: int,
        st: os.stat_result,
        mode: int | None,
        uid: int | None,
        gid: int | None,
        kill_suidgid: bool,
    ) -> None:
        if mode is None and kill_suidgid and st.st_mode & _SUID_SGID:
            mode = st.st_mode & ~_SUID_SGID
        if mode is not None:
            self._check_privilege(
                mode, st.st_uid if uid is None else uid, st.st_gid if gid is None else gid
            )
        if uid is not None or gid is not None:
            syscalls.fchown_node(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        if mode is not None:
            if stat.S_ISLNK(st.st_mode):
                raise OSError(errno.EOPNOTSUPP, "chmod of a symlink")
            os.chmod(confine.proc_path(fd), mode & 0o7777)

    def change_link(self, dirfd: int, name: bytes, st: os.stat_result, uid: int, gid: int) -> None:
        raise AssertionError("host mode chowns symlinks through change()")


class Mapped(Ownership):
    """The host filesystem refuses user xattrs: the host's values, within what it can keep."""

    name = "mapped"
    links_by_dir = True  # nothing kept, but chown checked against the directory's view

    def view(self, fd: int, st: os.stat_result) -> os.stat_result:
        uid, gid = self._default_ids(st)
        return restat(st, mode=st.st_mode & ~_SUID_SGID, uid=uid, gid=gid)

    def view_link(self, dirfd: int, name: bytes, st: os.stat_result) -> os.stat_result:
        uid, gid = self._default_ids(st)
        return restat(st, mode=st.st_mode, uid=uid, gid=gid)

    def host_node(self, mode: int) -> int:
        if stat.S_IFMT(mode) in _SPECIAL:
            raise OSError(errno.EPERM, "special files need user xattrs on the host")
        return mode & ~(_SUID_SGID | stat.S_ISVTX)

    def change(
        self,
        fd: int,
        st: os.stat_result,
        mode: int | None,
        uid: int | None,
        gid: int | None,
        kill_suidgid: bool,
    ) -> None:
        shown = self.view(fd, st)
        if (uid is not None and uid != shown.st_uid) or (gid is not None and gid != shown.st_gid):
            raise OSError(errno.EPERM, "owners are not kept where user xattrs are refused")
        if mode is not None:
            _set_host_perm(fd, st, mode & 0o777)

    def change_link(self, dirfd: int, name: bytes, st: os.stat_result, uid: int, gid: int) -> None:
        if (uid, gid) != self._default_ids(st):
            raise OSError(errno.EPERM, "owners are not kept where user xattrs are refused")


class Overlay(Ownership):
    """The default: guest ownership in ``user.bridgefs.owner`` (see the module's docstring)."""

    name = "overlay"
    links_by_dir = True

    def _default(self, st: os.stat_result) -> os.stat_result:
        uid, gid = self._default_ids(st)
        if (uid, gid) == (st.st_uid, st.st_gid):
            return st
        return restat(st, mode=st.st_mode, uid=uid, gid=gid)

    def view(self, fd: int, st: os.stat_result) -> os.stat_result:
        host_fmt = stat.S_IFMT(st.st_mode)
        if host_fmt not in (stat.S_IFREG, stat.S_IFDIR):
            return self._default(st)
        record = self._record(fd, st)
        if record is None:
            return self._default(st)
        fmt = stat.S_IFMT(record.mode)
        # The host's type wins where the two disagree: only a regular file stands for another.
        if host_fmt == stat.S_IFDIR or fmt not in _SPECIAL:
            fmt, rdev = host_fmt, 0
        else:
            rdev = record.rdev
        return restat(
            st, mode=fmt | (record.mode & 0o7777), uid=record.uid, gid=record.gid, rdev=rdev
        )

    def host_node(self, mode: int) -> int:
        if stat.S_IFMT(mode) in _SPECIAL:
            return stat.S_IFREG | 0o600  # the placeholder
        return stat.S_IFMT(mode) | host_perm(mode)

    @staticmethod
    def _record(fd: int, st: os.stat_result) -> Record | None:
        key = (st.st_dev, st.st_ino)
        known = _RECORDS.get(key)
        if known is not None and known[0] == st.st_ctime_ns:
            return known[1]
        raw = _read(fd, OWNER_XATTR)
        record = None if raw is None else Record.decode(raw)
        if len(_RECORDS) >= _RECORDS_MAX:
            _RECORDS.clear()
        _RECORDS[key] = (st.st_ctime_ns, record)
        return record

    @staticmethod
    def _write(fd: int, record: Record) -> None:
        os.setxattr(confine.proc_path(fd), OWNER_XATTR, record.encode())
        st = os.fstat(fd)
        _RECORDS[(st.st_dev, st.st_ino)] = (st.st_ctime_ns, record)

    def made(
        self, fd: int, caller: Caller | None, parent: os.stat_result, mode: int, rdev: int
    ) -> None:
        super().made(fd, caller, parent, mode, rdev)
        special = stat.S_IFMT(mode) in _SPECIAL
        if caller is None:
            # A client that sends no caller: the host's own owner shows, and only what the
            # host file cannot carry is kept.
            st = os.fstat(fd)
            if not special and stat.S_IMODE(mode) == stat.S_IMODE(st.st_mode):
                return
            uid, gid = self._default_ids(st)
        else:
            uid, gid, mode = _new_owner(caller, parent, mode)
        self._write(fd, Record(uid, gid, mode, rdev if special else 0))

    def change(
        self,
        fd: int,
        st: os.stat_result,
        mode: int | None,
        uid: int | None,
        gid: int | None,
        kill_suidgid: bool,
    ) -> None:
        shown = self.view(fd, st)
        new_mode = shown.st_mode
        if mode is not None:
            new_mode = stat.S_IFMT(new_mode) | (mode & 0o7777)
        elif kill_suidgid:
            new_mode &= ~_SUID_SGID
        record = Record(
            shown.st_uid if uid is None else uid,
            shown.st_gid if gid is None else gid,
            new_mode,
            shown.st_rdev,
        )
        if (record.uid, record.gid, record.mode) == (shown.st_uid, shown.st_gid, shown.st_mode):
            return
        self._write(fd, record)
        if stat.S_IFMT(new_mode) not in _SPECIAL:
            _set_host_perm(fd, st, host_perm(new_mode))

    # --- symlinks -------------------------------------------------------------------------------
    def _links(self, dirfd: int) -> dict[bytes, tuple[int, int]]:
        raw = _read(dirfd, LINKS_XATTR)
        table: dict[bytes, tuple[int, int]] = {}
        for line in (raw or b"").splitlines():
            parts = line.split()
            if len(parts) == 3:
                try:
                    table[bytes.fromhex(parts[2].decode())] = (int(parts[0]), int(parts[1]))
                except ValueError:
                    continue
        return table

    def _store_links(self, dirfd: int, table: dict[bytes, tuple[int, int]]) -> None:
        try:
            if not table:
                try:
                    os.removexattr(confine.proc_path(dirfd), LINKS_XATTR)
                except OSError as exc:
                    if exc.errno != errno.ENODATA:
                        raise
                return
            value = b"".join(
                b"%d %d %s\n" % (u, g, n.hex().encode()) for n, (u, g) in table.items()
            )
            os.setxattr(confine.proc_path(dirfd), LINKS_XATTR, value)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.E2BIG, errno.ERANGE):
                raise
            # A directory's attributes are full: its symlinks show the host's owner.
            log.warning("symlink owners of a directory not kept: %s", exc.strerror)

    def _update(self, dirfd: int, name: bytes, owner: tuple[int, int] | None) -> None:
        with _LINKS_LOCK:
            table = self._links(dirfd)
            if owner is None:
                if table.pop(name, None) is None:
                    return
            else:
                table[name] = owner
            self._store_links(dirfd, table)

    def view_link(self, dirfd: int, name: bytes, st: os.stat_result) -> os.stat_result:
        owner = self._links(dirfd).get(name)
        if owner is None:
            return self._default(st)
        return restat(st, mode=st.st_mode, uid=owner[0], gid=owner[1])

    def made_link(self, dirfd: int, name: bytes, fd: int, caller: Caller | None) -> None:
        if caller is None:
            return
        parent = self.view(dirfd, os.fstat(dirfd))
        uid, gid, _ = _new_owner(caller, parent, stat.S_IFLNK | 0o777)
        self._update(dirfd, name, (uid, gid))

    def change_link(self, dirfd: int, name: bytes, st: os.stat_result, uid: int, gid: int) -> None:
        self._update(dirfd, name, (uid, gid))

    def link_gone(self, dirfd: int, name: bytes) -> None:
        self._update(dirfd, name, None)

    def link_moved(self, olddir: int, name: bytes, newdir: int, new_name: bytes) -> None:
        with _LINKS_LOCK:
            old = self._links(olddir)
            owner = old.pop(name, None)
            same = os.fstat(olddir)[1:3] == os.fstat(newdir)[1:3]
            new = old if same else self._links(newdir)
            if owner is None and new.pop(new_name, None) is None:
                return
            if owner is not None:
                new[new_name] = owner
            if not same:
                self._store_links(olddir, old)
            self._store_links(newdir, new)


def supports_user_xattrs(fd: int) -> bool:
    """Whether the filesystem of ``fd`` (a directory) keeps user xattrs; asked without writing,
    so read-only shares can be asked too."""
    try:
        os.getxattr(confine.proc_path(fd), OWNER_XATTR)
    except OSError as exc:
        return exc.errno not in _NO_XATTRS
    return True


def policy_for(
    config: Config, root_fd: int, read_only: bool, share_name: str, quiet: bool = False
) -> Ownership:
    """The policy a share gets under ``config``; says so when it cannot be the overlay."""
    if config.mode == "host":
        if config.allow_privilege and not quiet:
            log.warning(
                "share %s: --ownership host with privilege allowed: guests may create device "
                "nodes, setuid-root files and security xattrs on this host",
                share_name,
            )
        return Host(config, read_only)
    if supports_user_xattrs(root_fd):
        return Overlay(config, read_only)
    if quiet:
        return Mapped(config, read_only)
    log.warning(
        "share %s: the host filesystem refuses user xattrs: guest owners and modes cannot be "
        "kept; files show the host's mode and %s (chown to others and special files: EPERM)",
        share_name,
        "owner" if config.default_owner is None else "uid:gid {}:{}".format(*config.default_owner),
    )
    return Mapped(config, read_only)
