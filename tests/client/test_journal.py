"""The change journal's answers, and the journaling layer over MemFS (a real filesystem, no
mount): exact paths while it is sure, "everything" (None) whenever it cannot be."""

from __future__ import annotations

import os
import stat

from bridgefs.client.journal import ChangeJournal
from bridgefs.client.journaling import JournalingLayer
from bridgefs.client.names import NameTable
from bridgefs.client.naming import NamingLayer
from bridgefs.fuse.filesystem import ROOT_ID, Context, SetAttr
from bridgefs.memfs import MemFS

CTX = Context()


def following() -> ChangeJournal:
    journal = ChangeJournal(capacity=8)
    journal.following(True)
    return journal


def test_paths_since_a_token_relative_to_the_folder_asked_about():
    journal = following()
    token, paths = journal.since("", b"")
    assert paths is None  # not a token of this journal
    journal.record(b"repo/a", b"repo/sub/", b"elsewhere/b", b"repo/a")
    new, paths = journal.since(token, b"repo")
    assert sorted(paths) == [b"a", b"sub/"]
    assert journal.since(new, b"repo") == (new, [])


def test_a_change_above_the_folder_asked_about_is_everything():
    journal = following()
    token, _ = journal.since("", b"")
    journal.record(b"work/")  # the folder holding the repository moved
    assert journal.since(token, b"work/repo")[1] is None


def test_losses_and_the_bound_answer_everything():
    journal = following()
    token, _ = journal.since("", b"")
    journal.lost()
    after, _ = journal.since(token, b"")
    assert journal.since(token, b"")[1] is None
    assert journal.since(after, b"")[1] == []
    for n in range(9):  # one past the bound
        journal.record(b"f%d" % n)
    assert journal.since(after, b"")[1] is None
    journal.following(False)
    down, paths = journal.since(after, b"")
    assert paths is None
    journal.following(True)
    assert journal.since(down, b"")[1] is None  # given while down: never exact


def test_the_layer_records_changes_through_the_mount_by_path():
    names = NameTable()
    journal = following()
    fs = JournalingLayer(NamingLayer(MemFS(), names), names, journal)
    token, _ = journal.since("", b"")
    d = fs.mkdir(CTX, ROOT_ID, b"d", 0o755, 0o022).ino
    entry, opened = fs.create(CTX, d, b"f", stat.S_IFREG | 0o644, 0o022, os.O_RDWR)
    fs.write(CTX, entry.ino, opened.fh, 0, b"hello", 0)
    fs.setattr(CTX, entry.ino, SetAttr(mode=0o600), None)
    fs.rename(CTX, d, b"f", ROOT_ID, b"g", 0)
    fs.unlink(CTX, ROOT_ID, b"g")
    assert sorted(journal.since(token, b"")[1]) == [b"d", b"d/", b"d/f", b"d/f/", b"g", b"g/"]

    token, _ = journal.since("", b"")
    names.forget(d)  # a node known by no path: the journal cannot say where it changed
    fs.create(CTX, d, b"h", stat.S_IFREG | 0o644, 0o022, os.O_RDWR)
    assert journal.since(token, b"")[1] is None


def test_a_path_changed_again_is_one_entry():
    journal = following()  # a bound of 8 paths
    token, _ = journal.since("", b"")
    for n in range(100):  # a log written line by line, beside two other files
        journal.record(b"app.log", b"a%d" % (n % 2))
    assert sorted(journal.since(token, b"")[1]) == [b"a0", b"a1", b"app.log"]
    middle, _ = journal.since("", b"")
    journal.record(b"a0")
    assert journal.since(middle, b"")[1] == [b"a0"]
