"""Behaviours broken on purpose, for tests that show what holds without them.  Each is switched on
by a variable in the server's environment (read once, at start); the server logs loudly when one
is set.  Never set them outside a test.

A broken confinement, for the test that shows the sandbox holds without it: with
BRIDGEFS_TEST_BREAK_CONFINEMENT=1 in the server's environment (read once, at start), a
Lookup whose name holds a "/" is answered by opening the share's path joined with that name, as
a naive server would: ``..`` climbs out of the share.  The reply's errno says whether the file
could be opened and read (0) or not.

Echoes let through, for the tests that show the client copes with hearing its own changes back
(as it would if echo suppression missed one): with BRIDGEFS_TEST_ECHO_OWN_CHANGES=1 every change
a session made itself is sent to its own Watch stream as well.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from bridgefs.rpc import pb

if TYPE_CHECKING:
    from bridgefs.server.sessions import Session

ENV = "BRIDGEFS_TEST_BREAK_CONFINEMENT"
ENABLED = os.environ.get(ENV) == "1"

log = logging.getLogger("bridgefs.server")
if ENABLED:
    log.warning("%s=1: the confinement is broken on purpose, for a test", ENV)

ECHO_ENV = "BRIDGEFS_TEST_ECHO_OWN_CHANGES"
ECHO_OWN_CHANGES = os.environ.get(ECHO_ENV) == "1"
if ECHO_OWN_CHANGES:
    log.warning("%s=1: every session hears its own changes back, for a test", ECHO_ENV)


def lookup(session: Session | None, name: bytes) -> pb.EntryReply | None:
    """The broken answer to a Lookup, or None to let the real one answer."""
    if session is None or b"/" not in name:
        return None
    path = os.path.join(os.fsencode(session.share.path), name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("broken confinement: %r: %s", path, exc)
        return pb.EntryReply(errno=exc.errno or 5)
    log.warning("broken confinement: read %r", path)
    return pb.EntryReply()
