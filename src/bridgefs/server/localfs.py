"""Host file operations for one client session, on confined fds only.

Every method takes server handles and single names, resolves them through the session's tables
and confine.py, and either returns plain values (stat results, handles, bytes) or raises OSError
with the host's errno.  No paths from the client exist here; the only path strings are the
``/proc/self/fd/N`` magic links confine.proc_path builds for fds the server already holds, and
a client's name reaches the host only as a ``confine.Name`` through at.py.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence

from bridgefs.server import at, confine, ownership, syscalls
from bridgefs.server.confine import Name
from bridgefs.server.dirs import DirListing, dtype_of_mode
from bridgefs.server.echo import EchoLog
from bridgefs.server.handles import NodeTable, OpenTable
from bridgefs.server.ownership import Caller, Ownership
from bridgefs.server.shares import Share
from bridgefs.server.writers import Writers

MAX_IO = 1 << 20
MAX_COPY = 128 << 20  # one CopyFileRange moves at most this much; callers continue
MAX_READDIR = 1024
# A handle-less listing answers a whole directory of ordinary size in one call.
MAX_LISTDIR = 4096
MAX_SUBTREE = 8192  # records of the subdirectories one ListDir may add
MAX_READ_FILES = 1024  # files one ReadFiles reads at most

Entry = tuple[int, os.stat_result]  # a node handle handed out, and its attributes
# A listing record: (cookie of the next record, name, inode, d_type, its Entry with plus)
Record = tuple[int, bytes, int, int, Entry | None]
Listing = tuple[list[Record], bool]  # and whether it reaches the end of the directory


def _xattr_name(name: bytes) -> bytes:
    if not name or b"\0" in name or len(name) > 255:
        raise OSError(errno.EINVAL if len(name) <= 255 else errno.ERANGE, "bad xattr name")
    return name


class LocalFs:
    def __init__(
        self, share: Share, nodes: NodeTable, files: OpenTable, echo: EchoLog | None = None
    ):
        self.share = share
        self.nodes = nodes
        self.files = files
        # Every change below is wrapped in an echo context so this session's Watch
        # stream can leave it out (no-ops while the session does not watch).
        self.echo = echo if echo is not None else EchoLog()
        self.writers = Writers(self.echo)
        # Who the guest sees as owners, and what the host gets (ownership.py); the servicer
        # puts the server's configured policy in before the session's first call.
        self.owners: Ownership = ownership.policy_for(
            ownership.Config(), share.root_fd, share.read_only, share.name, quiet=True
        )
        # Where each symlink handed out was last named: (parent handle, name).  Its guest owner
        # is kept by that directory, which a call naming the symlink by handle must find.
        self._link_homes: dict[int, tuple[int, bytes]] = {}

    # --- helpers ----------------------------------------------------------------------------------
    def _writable(self, op: str) -> None:
        if self.share.read_only:
            raise confine.Refused(errno.EROFS, f"{op} on read-only share {self.share.name!r}")

    def _issue(self, fd: int) -> Entry:
        try:
            st = os.fstat(fd)
            shown = self.owners.view(fd, st)
        except BaseException:
            os.close(fd)
            raise
        return self.nodes.issue(fd, st), shown

    def _lookup_issue(self, dirfd: int, name: Name, parent: int) -> Entry:
        fd = at.lookup(dirfd, name)
        try:
            st = os.fstat(fd)
            if not stat.S_ISLNK(st.st_mode):
                shown = self.owners.view(fd, st)
            else:
                shown = self.owners.view_link(dirfd, name, st)
        except BaseException:
            os.close(fd)
            raise
        handle = self.nodes.issue(fd, st)
        if handle and stat.S_ISLNK(st.st_mode):
            self._link_homes[handle] = (parent, bytes(name))
        return handle, shown

    def _shown(self, handle: int, fd: int, st: os.stat_result) -> os.stat_result:
        """The guest's view of node ``handle`` (``fd``, host attributes ``st``)."""
        if not stat.S_ISLNK(st.st_mode):
            return self.owners.view(fd, st)
        home = self._link_homes.get(handle)
        if home is None:
            return self.owners.view(fd, st)
        try:
            with self.nodes.use(home[0]) as dirfd:
                return self.owners.view_link(dirfd, home[1], st)
        except OSError:
            return self.owners.view(fd, st)

    def _parent_view(self, dirfd: int) -> os.stat_result:
        return self.owners.view(dirfd, os.fstat(dirfd))

    @contextlib.contextmanager
    def _io(self, fh: int, handle: int, flags: int, kind: str = "file") -> Iterator[int]:
        """An fd for I/O: the open file ``fh``, or, for fh 0, the node ``handle`` opened with
        ``flags`` for this call alone.  A client whose kernel never sends opens (no-open mode)
        addresses files by node."""
        if fh:
            with self.files.use(fh, kind) as of:
                yield of.fd
            return
        with self.nodes.use(handle) as node_fd:
            fd = confine.reopen_dir(node_fd) if kind == "dir" else confine.reopen(node_fd, flags)
        try:
            yield fd
        finally:
            try:
                with self.echo.closing(fd):
                    pass  # the close below is reported as a change when the file was written
            finally:
                os.close(fd)

    def _close_writer(self, dirfd: int, name: Name) -> os.stat_result | None:
        """The node ``name`` names (None if none), no longer kept open for writing."""
        try:
            st = at.stat(dirfd, name)
        except OSError:
            return None  # the unlink will say what is wrong
        self.writers.close_inode((st.st_dev, st.st_ino))
        return st

    def _made(self, fd: int, dirfd: int, caller: Caller | None, mode: int, rdev: int = 0) -> None:
        """A node of guest ``mode`` was made: its owner and mode (ownership.py)."""
        parent = self._parent_view(dirfd)
        with self.echo.node(fd):
            self.owners.made(fd, caller, parent, mode, rdev)

    # --- names ------------------------------------------------------------------------------------
    def lookup(self, parent: int, name: bytes) -> Entry:
        name = confine.check_name(name)
        with self.nodes.use(parent) as dirfd:
            return self._lookup_issue(dirfd, name, parent)

    def mknod(
        self,
        parent: int,
        name: bytes,
        mode: int,
        rdev: int,
        umask: int,
        caller: Caller | None = None,
    ) -> Entry:
        self._writable("mknod")
        name = confine.check_name(name)
        mode = stat.S_IFMT(mode) | (mode & 0o7777 & ~umask)
        host = self.owners.host_node(mode)
        host_rdev = rdev if stat.S_IFMT(host) in (stat.S_IFCHR, stat.S_IFBLK) else 0
        checked = name
        return self._make_with(
            parent, checked, mode, caller, rdev, lambda d: at.mknod(d, checked, host, host_rdev)
        )

    def _make_with(
        self,
        parent: int,
        name: Name,
        mode: int,
        caller: Caller | None,
        rdev: int,
        make: Callable[[int], None],
    ) -> Entry:
        with self.nodes.use(parent) as dirfd:
            with self.echo.added(dirfd, name):
                make(dirfd)
            handle, _ = self._lookup_issue(dirfd, name, parent)
            try:
                with self.nodes.use(handle) as fd:
                    self._made(fd, dirfd, caller, mode, rdev)
                    return handle, self._shown(handle, fd, os.fstat(fd))
            except BaseException:
                self.nodes.forget(handle, 1)
                raise

    def mkdir(
        self, parent: int, name: bytes, mode: int, umask: int, caller: Caller | None = None
    ) -> Entry:
        self._writable("mkdir")
        name = confine.check_name(name)
        mode = stat.S_IFDIR | (mode & 0o7777 & ~umask)
        perm = stat.S_IMODE(self.owners.host_node(mode))
        checked = name
        return self._make_with(
            parent, checked, mode, caller, 0, lambda d: at.mkdir(d, checked, perm)
        )

    def symlink(
        self, parent: int, name: bytes, target: bytes, caller: Caller | None = None
    ) -> Entry:
        self._writable("symlink")
        name = confine.check_name(name)
        if not target or b"\0" in target or len(target) >= 4096:
            raise OSError(errno.EINVAL if len(target) < 4096 else errno.ENAMETOOLONG, "bad target")
        with self.nodes.use(parent) as dirfd:
            with self.echo.added(dirfd, name):
                at.symlink(target, dirfd, name)
            handle, _ = self._lookup_issue(dirfd, name, parent)
            try:
                with self.nodes.use(handle) as fd, self.echo.node(dirfd):
                    self.owners.made_link(dirfd, name, fd, caller)
                    return handle, self._shown(handle, fd, os.fstat(fd))
            except BaseException:
                self.nodes.forget(handle, 1)
                raise

    def link(self, handle: int, new_parent: int, new_name: bytes) -> Entry:
        self._writable("link")
        new_name = confine.check_name(new_name)
        with self.nodes.use(handle) as fd, self.nodes.use(new_parent) as dirfd:
            with self.echo.node(fd), self.echo.added(dirfd, new_name):
                at.link(fd, dirfd, new_name)
            st = self._shown(handle, fd, os.fstat(fd))
        self.nodes.ref(handle)
        return handle, st

    def unlink(self, parent: int, name: bytes) -> None:
        self._writable("unlink")
        name = confine.check_name(name)
        with self.nodes.use(parent) as dirfd:
            st = self._close_writer(dirfd, name)
            with self.echo.removed(dirfd, name):
                at.unlink(dirfd, name)
            if st is not None and stat.S_ISLNK(st.st_mode):
                with self.echo.node(dirfd):
                    self.owners.link_gone(dirfd, name)

    def rmdir(self, parent: int, name: bytes) -> None:
        self._writable("rmdir")
        name = confine.check_name(name)
        with self.nodes.use(parent) as dirfd, self.echo.removed(dirfd, name):
            at.rmdir(dirfd, name)

    def rename(
        self, parent: int, name: bytes, new_parent: int, new_name: bytes, flags: int
    ) -> None:
        self._writable("rename")
        name = confine.check_name(name)
        new_name = confine.check_name(new_name)
        if flags & ~at.RENAME_FLAGS:
            raise OSError(errno.EINVAL, f"rename flags {flags:#x}")
        exchange = bool(flags & syscalls.RENAME_EXCHANGE)
        with self.nodes.use(parent) as olddir, self.nodes.use(new_parent) as newdir:
            src = self._close_writer(olddir, name)
            dst = self._close_writer(newdir, new_name)
            with self.echo.moved(olddir, name, newdir, new_name, exchange):
                at.rename(olddir, name, newdir, new_name, flags)
            src_link = src is not None and stat.S_ISLNK(src.st_mode)
            dst_link = dst is not None and stat.S_ISLNK(dst.st_mode)
            if not (src_link or dst_link):
                return
            # A symlink's guest owner is kept by its directory, under its name: it moves along.
            with self.echo.node(olddir), self.echo.node(newdir):
                if exchange:
                    self.owners.link_moved(olddir, name, newdir, b"\0swap")
                    self.owners.link_moved(newdir, new_name, olddir, name)
                    self.owners.link_moved(newdir, b"\0swap", newdir, new_name)
                else:
                    self.owners.link_moved(olddir, name, newdir, new_name)
        moves = {(parent, bytes(name)): (new_parent, bytes(new_name))}
        if exchange:
            moves[(new_parent, bytes(new_name))] = (parent, bytes(name))
        for handle, home in list(self._link_homes.items()):
            if home in moves:
                self._link_homes[handle] = moves[home]

    def forget(self, items: Iterable[tuple[int, int]]) -> None:
        for handle, count in items:
            if self.nodes.forget(handle, count):
                self.writers.close(handle)
                self._link_homes.pop(handle, None)

    def close(self) -> None:
        """The session ends: close what it kept open for writing."""
        self.writers.close_all()

    # --- attributes -------------------------------------------------------------------------------
    def getattr(self, handle: int, fh: int | None) -> os.stat_result:
        if fh is not None:
            with self.files.use(fh) as of:
                return self._shown(handle, of.fd, os.fstat(of.fd))
        with self.nodes.use(handle) as fd:
            return self._shown(handle, fd, os.fstat(fd))

    def setattr(
        self,
        handle: int,
        fh: int | None,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        atime_ns: int | None = None,
        mtime_ns: int | None = None,
        atime_now: bool = False,
        mtime_now: bool = False,
        kill_suidgid: bool = False,
    ) -> os.stat_result:
        self._writable("setattr")
        with self.nodes.use(handle) as fd, self.echo.node(fd):
            st = os.fstat(fd)
            if uid is not None or gid is not None or mode is not None or kill_suidgid:
                self._change_owner(handle, fd, st, mode, uid, gid, kill_suidgid)
            if size is not None:
                self._truncate(fd, fh, size)
            if atime_ns is not None or mtime_ns is not None or atime_now or mtime_now:
                syscalls.utimens_node(
                    fd, atime_ns, mtime_ns, atime_now=atime_now, mtime_now=mtime_now
                )
            return self._shown(handle, fd, os.fstat(fd))

    def _change_owner(
        self,
        handle: int,
        fd: int,
        st: os.stat_result,
        mode: int | None,
        uid: int | None,
        gid: int | None,
        kill_suidgid: bool,
    ) -> None:
        if not stat.S_ISLNK(st.st_mode) or not self.owners.links_by_dir:
            self.owners.change(fd, st, mode, uid, gid, kill_suidgid)
            return
        if mode is not None:
            raise OSError(errno.EOPNOTSUPP, "chmod of a symlink")
        if uid is None and gid is None:
            return
        home = self._link_homes.get(handle)
        if home is None:
            raise OSError(errno.EPERM, "the symlink's directory is not known")
        shown = self._shown(handle, fd, st)
        with self.nodes.use(home[0]) as dirfd, self.echo.node(dirfd):
            self.owners.change_link(
                dirfd,
                home[1],
                st,
                shown.st_uid if uid is None else uid,
                shown.st_gid if gid is None else gid,
            )

    def _truncate(self, node_fd: int, fh: int | None, size: int) -> None:
        if fh is not None:
            with self.files.use(fh) as of:
                os.ftruncate(of.fd, size)
                return
        self.owners.check_openable(node_fd, os.fstat(node_fd))
        io = confine.reopen(node_fd, os.O_WRONLY)
        try:
            os.ftruncate(io, size)
        finally:
            os.close(io)

    def readlink(self, handle: int) -> bytes:
        with self.nodes.use(handle) as fd:
            return at.readlink_node(fd)

    def access(self, handle: int, mask: int) -> None:
        if mask & os.W_OK and self.share.read_only:
            raise OSError(errno.EROFS, "read-only share")
        with self.nodes.use(handle) as fd:
            if not os.access(confine.proc_path(fd), mask):
                raise OSError(errno.EACCES, "access denied")

    def statfs(self) -> os.statvfs_result:
        return os.statvfs(self.share.root_fd)

    def syncfs(self) -> None:
        fd = confine.reopen_dir(self.share.root_fd)
        try:
            syscalls.syncfs(fd)
        finally:
            os.close(fd)

    # --- extended attributes ----------------------------------------------------------------------
    def setxattr(self, handle: int, name: bytes, value: bytes, flags: int) -> None:
        self._writable("setxattr")
        self.owners.check_xattr_write(_xattr_name(name))
        with self.nodes.use(handle) as fd, self.echo.node(fd):
            os.setxattr(confine.proc_path(fd), _xattr_name(name), value, flags)

    def getxattr(self, handle: int, name: bytes) -> bytes:
        self.owners.check_xattr_read(_xattr_name(name))
        with self.nodes.use(handle) as fd:
            return os.getxattr(confine.proc_path(fd), _xattr_name(name))

    def listxattr(self, handle: int) -> list[bytes]:
        with self.nodes.use(handle) as fd:
            names = [os.fsencode(n) for n in os.listxattr(confine.proc_path(fd))]
        return self.owners.visible_xattrs(names)

    def removexattr(self, handle: int, name: bytes) -> None:
        self._writable("removexattr")
        self.owners.check_xattr_write(_xattr_name(name))
        with self.nodes.use(handle) as fd, self.echo.node(fd):
            os.removexattr(confine.proc_path(fd), _xattr_name(name))

    # --- files ------------------------------------------------------------------------------------
    def _check_open_flags(self, flags: int, op: str) -> None:
        if (flags & os.O_ACCMODE) != os.O_RDONLY or flags & os.O_TRUNC:
            self._writable(op)

    def open(self, handle: int, flags: int) -> tuple[int, os.stat_result]:
        self._check_open_flags(flags, "open for writing")
        self.files.check_room()
        with (
            self.nodes.use(handle) as node_fd,
            self.echo.node(node_fd) if flags & os.O_TRUNC else contextlib.nullcontext(),
        ):
            self.owners.check_openable(node_fd, os.fstat(node_fd))
            fd = confine.reopen(node_fd, flags)
        try:
            st = self.owners.view(fd, os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return self.files.add(fd, "file", handle), st

    def create(
        self,
        parent: int,
        name: bytes,
        mode: int,
        umask: int,
        flags: int,
        keep_open: bool = True,
        caller: Caller | None = None,
    ) -> tuple[int, os.stat_result, int, bool]:
        """(handle, stat, fh, whether the file was made rather than an existing one opened);
        without ``keep_open`` the file is closed once made and fh is 0."""
        self._writable("create")
        name = confine.check_name(name)
        if keep_open:
            self.files.check_room()
        guest_mode = stat.S_IFREG | (mode & 0o7777 & ~umask)
        perm = stat.S_IMODE(self.owners.host_node(guest_mode))
        with self.nodes.use(parent) as dirfd:
            with self.echo.added(dirfd, name) as added:
                fd, created = at.create(dirfd, name, flags, perm)
                if not created:  # an existing file opened: no creation will be reported
                    added.cancel()
            try:
                if created:
                    self._made(fd, dirfd, caller, guest_mode)
                else:
                    self.owners.check_openable(fd, os.fstat(fd))
                handle, st = self._issue(confine.node_of(fd))
            except BaseException:
                os.close(fd)
                raise
        if not keep_open:
            # The client writes by node next: the file stays open for those writes (when it
            # was opened for writing at any offset, as they need).
            mode = fcntl.fcntl(fd, fcntl.F_GETFL)
            if mode & os.O_ACCMODE != os.O_RDONLY and not mode & os.O_APPEND:
                self.writers.adopt(handle, fd)
            else:
                try:
                    with self.echo.closing(fd):
                        pass  # the close below is reported as a change
                finally:
                    os.close(fd)
            return handle, st, 0, created
        try:
            fh = self.files.add(fd, "file", handle)
        except OSError:
            self.nodes.forget(handle, 1)
            raise
        return handle, st, fh, created

    def read_node(self, handle: int, offset: int, size: int) -> bytes:
        """A read without an open: the node is opened for this read alone.  Spares a client
        that reads a file it opened lazily the Open, Flush and Release round trips."""
        if size > MAX_IO:
            raise OSError(errno.EINVAL, f"read of {size} bytes (max {MAX_IO})")
        with self.nodes.use(handle) as node_fd:
            fd = confine.reopen(node_fd, os.O_RDONLY)
        try:
            return _pread_full(fd, size, offset)
        finally:
            os.close(fd)

    def read_files(
        self, handles: Sequence[int], max_file_size: int, max_total: int
    ) -> list[tuple[int, int, bytes, os.stat_result | None]]:
        """[(handle, errno, data, stat)] of whole small regular files, in order, until
        ``max_total`` bytes would be passed."""
        max_file_size = min(max_file_size, MAX_IO)
        max_total = min(max_total, MAX_IO)  # the reply stays within one message
        out: list[tuple[int, int, bytes, os.stat_result | None]] = []
        total = 0
        for handle in handles[:MAX_READ_FILES]:
            try:
                with self.nodes.use(handle) as node_fd:
                    st = os.fstat(node_fd)
                    if not stat.S_ISREG(self.owners.view(node_fd, st).st_mode):
                        raise OSError(errno.EINVAL, "not a regular file")
                    if st.st_size > max_file_size:
                        raise OSError(errno.EFBIG, "larger than asked for")
                    if total + st.st_size > max_total:
                        break
                    fd = confine.reopen(node_fd, os.O_RDONLY)
                try:
                    # One byte more than the size: a file that grew meanwhile is left out.
                    data = _pread_full(fd, st.st_size + 1, 0)
                    st = self.owners.view(fd, os.fstat(fd))
                finally:
                    os.close(fd)
                if len(data) != st.st_size or len(data) > max_file_size:
                    raise OSError(errno.EAGAIN, "changed while read")
            except OSError as exc:
                out.append((handle, exc.errno or errno.EIO, b"", None))
                continue
            total += len(data)
            out.append((handle, 0, data, st))
        return out

    def read(self, fh: int, offset: int, size: int) -> bytes:
        if size > MAX_IO:
            raise OSError(errno.EINVAL, f"read of {size} bytes (max {MAX_IO})")
        with self.files.use(fh) as of:
            data = os.pread(of.fd, size, offset)
            if 0 < len(data) < size:
                # A short read from a regular file can be a signal or a racing writer; only an
                # empty read means end of file, and FUSE takes any short answer as EOF.
                parts = [data]
                got = len(data)
                while got < size:
                    more = os.pread(of.fd, size - got, offset + got)
                    if not more:
                        break
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
            return data

    def write(self, fh: int, offset: int, data: bytes) -> int:
        if len(data) > MAX_IO:
            raise OSError(errno.EINVAL, f"write of {len(data)} bytes (max {MAX_IO})")
        self._writable("write")
        with self.files.use(fh) as of, self.echo.node(of.fd):
            view = memoryview(data)
            done = 0
            while done < len(view):
                n = os.pwrite(of.fd, view[done:], offset + done)
                if n == 0:
                    break  # no progress (a full device answers ENOSPC instead, as an OSError)
                done += n
            return done

    def flush(self, fh: int) -> None:
        # The close of a written file is reported as a change: record it like one.
        with self.files.use(fh) as of, self.echo.closing(of.fd):
            # close() of a duplicate is what a local close would do: report delayed write
            # errors and drop POSIX locks, while the handle itself stays open.
            os.close(os.dup(of.fd))

    def release(self, fh: int) -> None:
        if self.echo.recording:
            with self.files.use(fh) as of, self.echo.closing(of.fd):
                pass  # the close below is reported as a change when the file was written
        self.files.release(fh)

    def write_node(self, handle: int, offset: int, data: bytes) -> int:
        """A write without an open, at ``offset`` always: the client's kernel, whose page cache
        holds the data at that offset, chose it (for O_APPEND too, from the size it knows)."""
        if len(data) > MAX_IO:
            raise OSError(errno.EINVAL, f"write of {len(data)} bytes (max {MAX_IO})")
        self._writable("write")
        self.writers.check(handle)
        with (
            self.nodes.use(handle) as node_fd,
            self.writers.use(handle, lambda: confine.reopen(node_fd, os.O_WRONLY)) as fd,
            self.echo.node(fd),
        ):
            return _pwrite_full(fd, data, offset)

    def fsync(self, fh: int, datasync: bool, kind: str = "file", handle: int = 0) -> None:
        with self._io(fh, handle, os.O_RDONLY, kind) as fd:
            (os.fdatasync if datasync else os.fsync)(fd)
        if not fh and kind == "file":
            self.writers.check(handle)  # a write lost at the close of the idle writer

    def fallocate(self, fh: int, offset: int, length: int, mode: int, handle: int = 0) -> None:
        self._writable("fallocate")
        with self._io(fh, handle, os.O_WRONLY) as fd, self.echo.node(fd):
            syscalls.fallocate(fd, mode, offset, length)

    def lseek(self, fh: int, offset: int, whence: int, handle: int = 0) -> int:
        with self._io(fh, handle, os.O_RDONLY) as fd:
            return os.lseek(fd, offset, whence)

    def copy_file_range(
        self,
        fh_in: int,
        off_in: int,
        fh_out: int,
        off_out: int,
        length: int,
        flags: int,
        handle_in: int = 0,
        handle_out: int = 0,
    ) -> int:
        self._writable("copy_file_range")
        if flags:
            raise OSError(errno.EINVAL, "copy_file_range flags must be 0")
        with (
            self._io(fh_in, handle_in, os.O_RDONLY) as src,
            self._io(fh_out, handle_out, os.O_WRONLY) as dst,
            self.echo.node(dst),
        ):
            return os.copy_file_range(src, dst, min(length, MAX_COPY), off_in, off_out)

    # --- directories ------------------------------------------------------------------------------
    def opendir(self, handle: int) -> tuple[int, os.stat_result]:
        self.files.check_room()
        with self.nodes.use(handle) as node_fd:
            self.owners.check_openable(node_fd, os.fstat(node_fd))
            fd = confine.reopen_dir(node_fd)
        try:
            st = self.owners.view(fd, os.fstat(fd))
            listing = DirListing(fd, *self._dot_inos(fd))
        except BaseException:
            os.close(fd)
            raise
        return self.files.add(fd, "dir", handle, listing), st

    def readdir(self, fh: int, offset: int, plus: bool, max_entries: int) -> Listing:
        """([(next_cookie, name, ino, dtype, (handle, stat) or None)], eof)."""
        count = max(1, min(max_entries or MAX_READDIR, MAX_READDIR))
        with self.files.use(fh, "dir") as of:
            listing = of.listing
            if listing is None:  # every directory handle has one: OpenTable.add by opendir
                raise OSError(errno.EBADF, f"directory handle {fh} has no listing")
            with listing.lock:
                return self._read_listing(of.fd, listing, offset, plus, count, of.handle)

    def listdir_tree(
        self, handle: int, plus: bool, max_entries: int, subtree: int
    ) -> tuple[list[Record], bool, list[tuple[int, list[Record]]]]:
        """listdir from cookie 0, and then, with plus, whole listings of the subdirectories,
        breadth first, while their records stay within ``subtree``:
        (records, eof, [(subdirectory handle, records)])."""
        records, eof = self.listdir(handle, 0, plus, max_entries)
        below: list[tuple[int, list[Record]]] = []
        if not (plus and eof and subtree > 0):
            return records, eof, below
        budget = min(subtree, MAX_SUBTREE)
        room = MAX_IO - _size_of(records)  # the reply stays within one message
        queue = _subdirectories(records)
        while queue and budget > 0:
            sub = queue.pop(0)
            try:
                sub_records, sub_eof = self.listdir(sub, 0, True, budget)
            except OSError:
                continue  # gone or unreadable since: its own listing will say why
            size = _size_of(sub_records)
            if not sub_eof or size > room:  # does not fit: hand its references back, stop
                self.forget([(r[4][0], 1) for r in sub_records if r[4] is not None])
                break
            below.append((sub, sub_records))
            budget -= len(sub_records)
            room -= size
            queue.extend(_subdirectories(sub_records))
        return records, eof, below

    def listdir(self, handle: int, offset: int, plus: bool, max_entries: int) -> Listing:
        """readdir without a directory handle: a fresh listing of the node, read from cookie
        ``offset`` (a position in it, so a later call continues where this one stopped while
        the directory is unchanged)."""
        count = max(1, min(max_entries or MAX_LISTDIR, MAX_LISTDIR))
        with self.nodes.use(handle) as node_fd:
            fd = confine.reopen_dir(node_fd)
        listing = None
        try:
            listing = DirListing(fd, *self._dot_inos(fd))
            return self._read_listing(fd, listing, offset, plus, count, handle)
        finally:
            if listing is not None:
                listing.close()
            os.close(fd)

    def _dot_inos(self, fd: int) -> tuple[int, int]:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == self.share.root_key:
            return st.st_ino, st.st_ino  # the share root is its own parent, as in a chroot
        return st.st_ino, at.stat_parent(fd).st_ino

    def _read_listing(
        self, fd: int, listing: DirListing, offset: int, plus: bool, count: int, handle: int
    ) -> Listing:
        out: list[Record] = []
        records, eof = listing.read(offset, count)
        for cookie, name, ino, dtype in records:
            entry = None
            if plus and name not in (b".", b".."):
                try:
                    entry = self._lookup_issue(fd, confine.check_name(name), handle)
                except FileNotFoundError:
                    continue  # removed since it was listed
                except OSError as exc:
                    if exc.errno == errno.ENFILE and out:
                        return out, False  # node bound: hand back what fits
                    if exc.errno == errno.ENFILE:
                        raise
                    entry = None
                else:
                    ino, dtype = entry[1].st_ino, dtype_of_mode(entry[1].st_mode)
            out.append((cookie + 1, name, ino, dtype, entry))
        return out, eof

    def releasedir(self, fh: int) -> None:
        self.files.release(fh, "dir")


def _size_of(records: Sequence[Record]) -> int:
    """About what ``records`` take in a reply (a record with attributes is ~120 bytes + name)."""
    return sum(len(r[1]) + 128 for r in records)


def _subdirectories(records: Sequence[Record]) -> list[int]:
    """Handles of the directories among ``records`` (those listed with their attributes)."""
    return [
        entry[0] for *_, entry in records if entry is not None and stat.S_ISDIR(entry[1].st_mode)
    ]


def _pwrite_full(fd: int, data: bytes, offset: int) -> int:
    view = memoryview(data)
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n == 0:
            break  # no progress (a full device answers ENOSPC instead, as an OSError)
        done += n
    return done


def _pread_full(fd: int, size: int, offset: int) -> bytes:
    """pread until ``size`` bytes or end of file: FUSE takes any short answer as end of file."""
    parts = []
    got = 0
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return parts[0] if len(parts) == 1 else b"".join(parts)
