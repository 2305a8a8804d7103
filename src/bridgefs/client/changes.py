"""The change stream: host-side changes in, exact invalidations and replays out.

Runs on its own thread (never a FUSE worker: a notification may wait for a request that waits
for it).  While the stream flows the filesystem uses long-lived caches; when it breaks, every
cached name and node is dropped, the short timeouts return, and the stream is reopened with
backoff; once the server confirms the watch again, long caches resume.
"""

from __future__ import annotations

import errno
import logging
import threading
from typing import Any, Protocol

import grpc

from bridgefs.client.convert import ChangeKind as Kind
from bridgefs.client.convert import HostChange, change_of
from bridgefs.client.invalidate import Invalidator
from bridgefs.client.journal import ChangeJournal
from bridgefs.client.names import NameTable
from bridgefs.fuse.filesystem import ROOT_ID

log = logging.getLogger("bridgefs.client")

MAX_BACKOFF = 5.0


class Follower(Protocol):
    """What the stream drives (watched.py)."""

    names: NameTable
    invalidate: Invalidator
    journal: ChangeJournal

    def open_watch(self) -> Any: ...
    def resume(self) -> bool: ...
    def use_long_caches(self, on: bool) -> None: ...
    def replay(self, change: HostChange) -> bool: ...


class ChangeStream:
    def __init__(self, fs: Follower):
        self.fs = fs
        self.flowing = False
        self.counts = {
            "received": 0,
            "replayed": 0,
            "not_replayed": 0,
            "overflows": 0,
            "reconnects": 0,
        }
        self._stop = threading.Event()
        self._call: Any = None
        self._thread = threading.Thread(target=self._run, name="bridgefs-changes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._call = self.fs.open_watch()
                for message in self._call:
                    change = change_of(message)
                    if change.errno:
                        if change.errno != errno.ESTALE:
                            log.warning(
                                "the server refused the change stream: errno %d", change.errno
                            )
                        break
                    if change.kind == Kind.WATCHING:
                        self._up()
                        backoff = 0.1
                    else:
                        self._apply(change)
            except grpc.RpcError as exc:
                if not self._stop.is_set():
                    log.warning(
                        "change stream broke: %s", exc.code() if hasattr(exc, "code") else exc
                    )
            except Exception:  # a bug here must not leave long caches on without events
                log.exception("change stream failed")
            self._down()
            if self._stop.wait(backoff):
                break
            self.fs.resume()  # after a server restart: a new session, then the stream again
            backoff = min(backoff * 2, MAX_BACKOFF)
            self.counts["reconnects"] += 1

    def _up(self) -> None:
        # Changes made while the stream was down were not seen: nothing cached can be trusted.
        self.fs.invalidate.everything()
        self.fs.journal.following(True)
        self.flowing = True
        self.fs.use_long_caches(True)
        log.info("change stream up: long-lived caches on")

    def _down(self) -> None:
        self.fs.journal.following(False)
        if self.flowing:
            self.flowing = False
            self.fs.use_long_caches(False)
            self.fs.invalidate.everything()
            log.warning("change stream down: caches dropped, short timeouts until it is back")

    def _apply(self, change: HostChange) -> None:
        self.counts["received"] += 1
        if change.kind == Kind.OVERFLOW:
            self.counts["overflows"] += 1
            self.fs.invalidate.everything()
            self.fs.journal.lost()  # (after: see below)
            return
        invalidate(self.fs.names, self.fs.invalidate, change)
        # Journaled once the kernel forgot what was stale: a monitor told of the change earlier
        # could have git look at the old attributes, take the file as unchanged and never look
        # again.  Told later, git hears of it at its next status.
        self.fs.journal.record(*journal_paths(change))
        if self.fs.replay(change):
            self.counts["replayed"] += 1
        else:
            self.counts["not_replayed"] += 1


def journal_paths(change: HostChange) -> list[bytes]:
    """The paths ``change`` makes the journal record: a folder made, removed or moved also with
    a trailing ``/`` (everything under it changed)."""
    paths = [b"/".join(change.path)]
    if change.kind == Kind.MOVED:
        paths.append(b"/".join(change.dest))
    whole = change.is_dir and change.kind not in (Kind.MODIFIED, Kind.ATTRIB)
    return paths + [path + b"/" for path in paths if path] if whole else paths


def invalidate(names: NameTable, inval: Invalidator, change: HostChange) -> None:
    """Exactly what ``change`` makes stale: the names it touches, their parents' attributes and
    listings, the changed node's attributes (and pages, for content)."""
    kind = change.kind
    spots = [list(change.path)]
    if kind == Kind.MOVED:
        spots.append(list(change.dest))
    for path in spots:
        nodes = names.resolve(path)
        node = nodes[-1]
        if not path:
            node = ROOT_ID
        else:
            parent = nodes[-2]
            if parent is not None:
                inval.listing(parent)
            else:  # a directory the kernel never saw may still be in a listing fetched ahead
                inval.listings_all()
        if kind in (Kind.MODIFIED, Kind.ATTRIB):
            if node is not None:
                # content: pages and attributes; attributes alone: offset -1
                inval.inode(node, 0 if kind == Kind.MODIFIED else -1)
            continue
        parent = nodes[-2] if len(nodes) > 1 else None
        if parent is not None:
            inval.entry(parent, path[-1])
            inval.inode(parent, 0)
        if node is not None and kind == Kind.DELETED:
            inval.inode(node, -1)  # its link count changed
