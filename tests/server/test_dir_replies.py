"""Replies that spare the client a round trip: a change of a directory's names brings the
directory's attributes after it, a create says whether it made the file, and one Release closes
many files."""

from __future__ import annotations

import errno
import os
import stat


def same_attr(attr, st: os.stat_result) -> bool:
    return (attr.ino, attr.mode, attr.nlink, attr.size, attr.mtime_ns, attr.ctime_ns) == (
        st.st_ino,
        st.st_mode,
        st.st_nlink,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )


def test_changes_of_names_return_the_directory_after_them(tree, raw):
    share, _ = tree
    c = raw()
    d = c.MkDir(parent=1, name=b"d", mode=0o755)
    assert d.errno == 0 and same_attr(d.parent, os.stat(share))
    d = d.entry.handle
    created = c.Create(parent=d, name=b"f", mode=0o644, flags=os.O_WRONLY)
    assert created.created and same_attr(created.parent, os.stat(share / "d"))
    for change in (
        lambda: c.MkNod(parent=d, name=b"p", mode=stat.S_IFIFO | 0o644),
        lambda: c.Symlink(parent=d, name=b"s", target=b"f"),
        lambda: c.Link(handle=created.entry.handle, new_parent=d, new_name=b"h"),
        lambda: c.MkDir(parent=d, name=b"sub", mode=0o755),
    ):
        reply = change()
        assert reply.errno == 0 and same_attr(reply.parent, os.stat(share / "d"))
    for name in (b"p", b"s", b"h"):
        reply = c.Unlink(parent=d, name=name)
        assert reply.errno == 0 and same_attr(reply.parent, os.stat(share / "d"))
    reply = c.RmDir(parent=d, name=b"sub")
    assert reply.errno == 0 and same_attr(reply.parent, os.stat(share / "d"))
    failed = c.Unlink(parent=d, name=b"nothing")
    assert failed.errno == errno.ENOENT and not failed.HasField("parent")
    assert c.Release(handle=created.entry.handle, fh=created.fh).errno == 0


def test_create_says_whether_it_made_the_file(tree, raw):
    share, _ = tree
    c = raw()
    made = c.Create(parent=1, name=b"new", mode=0o644, flags=os.O_WRONLY)
    opened = c.Create(parent=1, name=b"file", mode=0o644, flags=os.O_WRONLY)
    assert made.errno == 0 and made.created
    assert opened.errno == 0 and not opened.created
    for reply in (made, opened):
        assert c.Release(handle=reply.entry.handle, fh=reply.fh).errno == 0


def test_one_release_closes_many_files(tree, raw):
    c = raw()
    files = [c.Create(parent=1, name=b"f%d" % i, mode=0o644, flags=os.O_WRONLY) for i in range(5)]
    first, rest = files[0], files[1:]
    # A handle that is not open does not keep the others open.
    reply = c.Release(
        handle=first.entry.handle, fh=first.fh, more_fhs=[f.fh for f in rest] + [first.fh + 1000]
    )
    assert reply.errno == errno.EBADF
    for f in files:
        assert c.Write(handle=f.entry.handle, fh=f.fh, offset=0, data=b"x").errno == errno.EBADF
