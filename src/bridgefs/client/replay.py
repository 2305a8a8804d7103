"""Replaying a host-side change inside the mount, so that the VM's kernel emits the inotify events
a watcher expects (IN_CREATE, IN_DELETE, IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM/TO, IN_ATTRIB).

One thread, whose kernel thread id is known, performs the change's system call on the mount.  The
kernel puts the caller's thread id in every request, so the filesystem recognises the replay's
requests and answers them from the plan made here: as if the change had not happened yet, then
succeeded.  Nothing a replay does reaches the server; every other thread is served as usual.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from bridgefs.client.beneath import open_dir_beneath
from bridgefs.client.convert import ChangeKind as Kind
from bridgefs.client.convert import HostChange
from bridgefs.client.host_sizes import HostSizes
from bridgefs.client.modify import modify_in_place
from bridgefs.client.names import NameTable
from bridgefs.fuse.filesystem import Attr, Context, Entry, FsError, Opened

log = logging.getLogger("bridgefs.client")

# Handles and node ids that exist only for replays: far above anything the server issues.
REPLAY_FH = 1 << 63
FAKE_NODE_BASE = 1 << 62
# Paths whose creation was never replayed, remembered at most; past it the oldest go (a later
# deletion of one of those is then replayed, as it was before this was remembered).
MAX_UNSEEN = 65_536
# Attempts at replaying a modification with sizes no truncate of the VM's own overtook.
MODIFY_TRIES = 8


@dataclass
class Plan:
    kind: Kind
    path: list[bytes]
    dest: list[bytes] = field(default_factory=list)
    is_dir: bool = False
    node: Entry | None = None  # the real node (CREATED: as created; MOVED: as moved)
    node_used: bool = False  # handed to the kernel (else its reference goes back)
    arrive: bool = False  # MOVED from a name the watchers never saw: created there first


def is_fake(ino: int) -> bool:
    return FAKE_NODE_BASE <= ino < REPLAY_FH


class Replayer:
    """``server_lookup(parent, name)``: the node a name stands for on the server now, with a
    reference that ``give_back(ino)`` returns when the kernel is not handed it;
    ``forget_name(parent, name)``: the replay starts from "not there yet" (an invalidation);
    ``host_attr(ino)``: the node's attributes on the server now, no cache between;
    ``sizes``: the host sizes seen (host_sizes.py), which tell a host truncate apart."""

    def __init__(
        self,
        names: NameTable,
        server_lookup: Callable[[int, bytes], Entry],
        give_back: Callable[[int], None],
        forget_name: Callable[[int, bytes], None],
        host_attr: Callable[[int], Attr | None] | None = None,
        sizes: HostSizes | None = None,
    ):
        self.names = names
        self._host_attr = host_attr or (lambda ino: None)
        self.sizes = sizes or HostSizes()
        self._server_lookup = server_lookup
        self._give_back = give_back
        self._forget_name = forget_name
        self.mountpoint = ""  # set once the mount is attached
        self.tid: int | None = None
        self.plan: Plan | None = None
        self._fake_next = FAKE_NODE_BASE
        self._fakes: dict[int, Attr] = {}
        self._lock = threading.Lock()
        self._size_token: int | None = None  # the sizes' token a running _modify read
        # Paths created on the host and gone again before their creation could be replayed:
        # the VM's watchers never saw them, so their deletion (or move away) is not theirs to
        # hear either.  Only the replay thread uses it.
        self._unseen: dict[tuple[bytes, ...], None] = {}

    # --- running a replay (on the replay thread) ---------------------------------------------
    def replay(self, change: HostChange) -> bool:
        """Perform ``change`` on the mount from this thread; False when it was not replayed
        (the invalidations already sent keep the caches right either way)."""
        self.tid = threading.get_native_id()
        plan = self._plan(change)
        if plan is None:
            return False
        try:
            if plan.kind in (Kind.CREATED, Kind.MOVED):
                at = plan.path if plan.kind == Kind.CREATED else plan.dest
                plan.node = self._server_node(at)
                if plan.node is None:  # gone again already: a later change says so
                    self._mark_unseen(at)
                    return False
            if plan.arrive and not self._arrive(plan):
                return False
            self.plan = plan
            done = self._perform(plan)
            if plan.arrive and not done:
                self._forget_at(plan.path)  # the name it made is not the node's any more
            return done
        except OSError as exc:
            log.debug(
                "replay of %s /%s failed: %s",
                change.kind.name,
                b"/".join(plan.path).decode(errors="replace"),
                exc,
            )
            if plan.arrive:
                self._forget_at(plan.path)
            return False
        finally:
            self.plan = None
            if plan.node is not None and not plan.node_used:
                self._give_back(plan.node.ino)

    def _plan(self, change: HostChange) -> Plan | None:
        """What to replay so that the VM's watchers hear a sequence native inotify could give:
        a name they never saw created is not deleted or moved away before their eyes.  (A move
        of one is replayed as its creation, then the move: editors save by renaming a fresh
        temporary file over the old one, and a watcher waits for the MOVED_TO.)"""
        path, dest = tuple(change.path), tuple(change.dest)
        if not path or (change.kind == Kind.MOVED and not dest):
            return None
        if change.kind == Kind.CREATED:
            self._unseen.pop(path, None)
        elif change.kind == Kind.DELETED and path in self._unseen:
            del self._unseen[path]
            return None
        elif change.kind == Kind.MOVED:
            arrive = path in self._unseen
            self._unseen.pop(path, None)
            self._unseen.pop(dest, None)
            return Plan(change.kind, list(path), list(dest), change.is_dir, arrive=arrive)
        return Plan(change.kind, list(path), list(dest), change.is_dir)

    def _arrive(self, move: Plan) -> bool:
        """The creation of a move's source, with the node the move is of: the kernel then
        holds the name (for as long as the node's entry is valid) and the move finds it."""
        made = Plan(Kind.CREATED, move.path, is_dir=move.is_dir, node=move.node)
        self.plan = made
        try:
            return self._perform(made)
        finally:
            self.plan = None
            move.node_used = made.node_used

    def _forget_at(self, path: list[bytes]) -> None:
        parent = self.names.resolve(path[:-1])[-1]
        if parent is not None:
            self._forget_name(parent, path[-1])

    def _mark_unseen(self, path: list[bytes]) -> None:
        self._unseen[tuple(path)] = None
        if len(self._unseen) > MAX_UNSEEN:
            del self._unseen[next(iter(self._unseen))]

    def _perform(self, plan: Plan) -> bool:
        root = os.open(self.mountpoint, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            parent = open_dir_beneath(root, plan.path[:-1])
            try:
                return self._perform_at(plan, root, parent, plan.path[-1])
            finally:
                os.close(parent)
        finally:
            os.close(root)

    def _perform_at(self, plan: Plan, root: int, parent: int, name: bytes) -> bool:
        kind = plan.kind
        if kind == Kind.CREATED:
            if plan.node is None or plan.node.attr is None:
                return False
            mode = plan.node.attr.mode
            if stat.S_ISDIR(mode):
                os.mkdir(name, 0o755, dir_fd=parent)
            elif stat.S_ISLNK(mode):
                os.symlink(b"x", name, dir_fd=parent)  # the answer carries the real node
            elif stat.S_ISREG(mode):
                os.close(
                    os.open(
                        name,
                        os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW,
                        0o644,
                        dir_fd=parent,
                    )
                )
            elif stat.S_ISFIFO(mode):
                os.mkfifo(name, 0o644, dir_fd=parent)
            else:
                return False  # devices and sockets: the invalidation is enough
            return True
        if kind == Kind.DELETED:
            os.unlink(name, dir_fd=parent) if not plan.is_dir else os.rmdir(name, dir_fd=parent)
            return True
        if kind == Kind.MODIFIED:
            if plan.is_dir:
                return False  # a listing change: the invalidation is all there is to it
            fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return False
                self._modify(fd, plan.path)  # IN_MODIFY; closing: IN_CLOSE_WRITE
            finally:
                os.close(fd)
            return True
        if kind == Kind.ATTRIB:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                return False
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=parent, follow_symlinks=False)
            return True
        if kind == Kind.MOVED:
            dest_parent = open_dir_beneath(root, plan.dest[:-1])
            try:
                os.rename(name, plan.dest[-1], src_dir_fd=parent, dst_dir_fd=dest_parent)
            finally:
                os.close(dest_parent)
            return True
        return False

    def _modify(self, fd: int, path: list[bytes]) -> None:
        """A host change of the contents of the file open as ``fd``, made on the mount.  The
        rule (docs/ARCHITECTURE.md, cache rules): the VM's size becomes max(the host's, its
        own), since the VM's may be ahead with writes not on the host yet; a host truncate
        (the host shorter than it was seen: host_sizes.py) wins and is replayed as one.

        The sizes are read before the kernel takes the inode's lock for the replay's call, so a
        truncate of the VM's own can land in between; the gate then refuses the call (ESTALE,
        ``sizes_unchanged``) and the sizes are read again: raised or cut to a size from before
        that truncate, the file would have a size neither the VM nor the host gave it."""
        ino = self.names.resolve(path)[-1]  # (the open put the name in the table)
        for _ in range(MODIFY_TRIES):
            token = self.sizes.token()
            seen = self.sizes.largest(ino) if ino is not None else 0
            host = self._host_attr(ino) if ino is not None else None
            self._size_token = token
            try:
                if host is not None and ino is not None and host.size < seen:
                    os.ftruncate(fd, host.size)  # the kernel drops its pages past it
                    self.sizes.set(ino, host.size)
                    return
                if host is not None and ino is not None:
                    self.sizes.seen(ino, host.size, token)
                modify_in_place(fd, host.size if host is not None else 0)
                return
            except OSError as exc:
                if exc.errno != errno.ESTALE:
                    raise
            finally:
                self._size_token = None
        # The VM keeps truncating: its own size stands, the watchers hear IN_MODIFY all the same.
        modify_in_place(fd, 0)

    def sizes_unchanged(self) -> bool:
        """Whether a replay may set the file's size in the kernel from the sizes it read: no
        size was set (a truncate of the VM's own) since.  Asked by the gate on the worker that
        answers the replay's call, while the kernel holds the inode's lock: a truncate after
        this waits for the replay's call to end."""
        token = self._size_token
        return token is None or token == self.sizes.token()

    def _server_node(self, path: list[bytes]) -> Entry | None:
        """The node at ``path`` as the server has it now, its parent put in the kernel's cache
        (and so in the name table) by a stat through the mount."""
        try:
            root = os.open(self.mountpoint, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.close(open_dir_beneath(root, path[:-1]))
            finally:
                os.close(root)
        except OSError:
            return None
        parent = self.names.resolve(path[:-1])[-1]
        if parent is None:
            return None
        try:
            entry = self._server_lookup(parent, path[-1])
        except FsError:
            return None
        self._forget_name(parent, path[-1])  # the replay starts from "not there yet"
        return entry

    # --- answering the replay's requests (on FUSE worker threads) ----------------------------
    def owns(self, ctx: Context) -> bool:
        return self.plan is not None and ctx.pid == self.tid

    def _is_target(self, parent: int, name: bytes, path: list[bytes]) -> bool:
        if not path or name != path[-1]:
            return False
        expected = self.names.resolve(path[:-1])[-1]
        return expected is None or expected == parent

    def _current(self) -> Plan:
        plan = self.plan
        if plan is None:  # the replay ended while one of its requests was on the way
            raise FsError(errno.EIO)
        return plan

    def lookup(self, parent: int, name: bytes, forward: Callable[[int, bytes], Entry]) -> Entry:
        plan = self._current()
        if plan.kind == Kind.CREATED and self._is_target(parent, name, plan.path):
            raise FsError(errno.ENOENT)
        if plan.kind == Kind.MOVED:
            if self._is_target(parent, name, plan.dest):
                raise FsError(errno.ENOENT)
            if self._is_target(parent, name, plan.path):
                return self.node()
        if plan.kind == Kind.DELETED and self._is_target(parent, name, plan.path):
            return self._fake(plan.is_dir)
        try:
            return forward(parent, name)
        except FsError as exc:
            # a directory on the way that is gone on the host already (a tree removed bottom-up)
            if exc.errno == errno.ENOENT and name in plan.path[:-1]:
                return self._fake(True)
            raise

    def node(self) -> Entry:
        """The real node, handed to the kernel as the result of the replayed operation."""
        plan = self._current()
        if plan.node is None or plan.node_used:
            raise FsError(errno.EIO)
        plan.node_used = True
        # The kernel takes a creation's attributes as they are: they were read before the
        # replay began and may be older already, so it is told to ask again at once.
        return Entry(plan.node.ino, plan.node.attr, plan.node.entry_timeout, 0)

    def opened(self) -> Opened:
        return Opened(fh=REPLAY_FH)  # no KEEP_CACHE: the kernel drops the file's stale pages

    def _fake(self, is_dir: bool) -> Entry:
        with self._lock:
            ino = self._fake_next
            self._fake_next += 1
            mode = (stat.S_IFDIR | 0o755) if is_dir else (stat.S_IFREG | 0o644)
            attr = Attr(ino=ino, mode=mode, nlink=2 if is_dir else 1)
            self._fakes[ino] = attr
        return Entry(ino=ino, attr=attr, entry_timeout=0, attr_timeout=0)

    def fake_attr(self, ino: int) -> Attr:
        with self._lock:
            attr = self._fakes.get(ino)
        if attr is None:
            raise FsError(errno.ESTALE)
        return attr

    def forget_fake(self, ino: int) -> None:
        with self._lock:
            self._fakes.pop(ino, None)
