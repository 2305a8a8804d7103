"""Hard links and symbolic links.

Symlinks with targets outside ``root`` (absolute paths, ``..``) are only ever
readlink()ed or lstat()ed, never followed.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest


def _errno_of(fn, *args, **kwargs):
    with pytest.raises(OSError) as exc:
        fn(*args, **kwargs)
    return exc.value.errno


# --- hard links -----------------------------------------------------------


def test_hard_link_shares_inode(root):
    (root / "a").write_bytes(b"shared")
    os.link(root / "a", root / "b")
    sa, sb = os.stat(root / "a"), os.stat(root / "b")
    assert sa.st_ino == sb.st_ino
    assert sa.st_dev == sb.st_dev
    assert sa.st_nlink == sb.st_nlink == 2
    assert sorted(os.listdir(root)) == ["a", "b"]


def test_hard_link_writes_visible_through_both_names(root):
    (root / "a").write_bytes(b"v1")
    os.link(root / "a", root / "b")
    (root / "b").write_bytes(b"version two")
    assert (root / "a").read_bytes() == b"version two"
    fd = os.open(root / "a", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"!")
    finally:
        os.close(fd)
    assert (root / "b").read_bytes() == b"version two!"
    assert os.stat(root / "b").st_size == 12
    os.chmod(root / "a", 0o600)
    assert stat.S_IMODE(os.stat(root / "b").st_mode) == 0o600


def test_hard_link_unlink_one_name(root):
    (root / "a").write_bytes(b"x")
    os.link(root / "a", root / "b")
    os.link(root / "a", root / "c")
    assert os.stat(root / "a").st_nlink == 3
    os.unlink(root / "a")
    assert os.stat(root / "b").st_nlink == 2
    assert (root / "c").read_bytes() == b"x"
    assert sorted(os.listdir(root)) == ["b", "c"]


def test_hard_link_across_directories(root):
    (root / "d1").mkdir()
    (root / "d2").mkdir()
    (root / "d1" / "f").write_bytes(b"x")
    os.link(root / "d1" / "f", root / "d2" / "g")
    assert os.stat(root / "d2" / "g").st_ino == os.stat(root / "d1" / "f").st_ino
    # hard links to files do not change directory link counts
    assert os.stat(root / "d2").st_nlink == 2


def test_hard_link_fstat_on_open_fd_sees_new_nlink(root):
    (root / "a").write_bytes(b"x")
    fd = os.open(root / "a", os.O_RDONLY)
    try:
        os.link(root / "a", root / "b")
        assert os.fstat(fd).st_nlink == 2
        os.unlink(root / "a")
        os.unlink(root / "b")
        assert os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)


def test_link_to_directory_eperm(root):
    (root / "d").mkdir()
    assert _errno_of(os.link, root / "d", root / "dlink") == errno.EPERM
    assert os.listdir(root) == ["d"]


def test_link_to_existing_target_eexist(root):
    (root / "a").write_bytes(b"a")
    (root / "b").write_bytes(b"b")
    (root / "d").mkdir()
    assert _errno_of(os.link, root / "a", root / "b") == errno.EEXIST
    assert _errno_of(os.link, root / "a", root / "d") == errno.EEXIST
    assert (root / "b").read_bytes() == b"b"
    assert os.stat(root / "a").st_nlink == 1


def test_hard_link_to_symlink_links_the_symlink(root):
    os.symlink("target-text", root / "sym")
    os.link(root / "sym", root / "sym2", follow_symlinks=False)
    assert os.readlink(root / "sym2") == "target-text"
    assert os.lstat(root / "sym2").st_ino == os.lstat(root / "sym").st_ino
    assert os.lstat(root / "sym").st_nlink == 2


# --- symbolic links -------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "plain",
        "does/not/exist",
        "/etc/passwd",
        "../x",
        "../../../../../../../../x",
        "./a/./b/../c",
        "trailing/",
        "with space and \u00e9\u4e2d",
        "a" * 1000,
    ],
)
def test_symlink_readlink_text_exact(root, target):
    link = root / "link"
    os.symlink(target, link)
    assert os.readlink(link) == target
    assert os.readlink(os.fsencode(link)) == os.fsencode(target)
    st = os.lstat(link)
    assert stat.S_ISLNK(st.st_mode)
    assert st.st_size == len(os.fsencode(target))
    assert os.listdir(root) == ["link"]
    assert not os.path.lexists(root / "plain")


def test_symlink_lstat_is_link_stat_follows_to_target(root):
    (root / "target").write_bytes(b"0123456789")
    os.symlink("target", root / "link")
    lst = os.lstat(root / "link")
    st = os.stat(root / "link")
    assert stat.S_ISLNK(lst.st_mode)
    assert stat.S_ISREG(st.st_mode)
    assert st.st_ino == os.stat(root / "target").st_ino
    assert lst.st_ino != st.st_ino
    assert st.st_size == 10
    assert (root / "link").read_bytes() == b"0123456789"


def test_symlink_relative_to_its_directory(root):
    (root / "d").mkdir()
    (root / "f").write_bytes(b"up")
    os.symlink("../f", root / "d" / "up")
    assert (root / "d" / "up").read_bytes() == b"up"
    os.symlink("d", root / "dirlink")
    assert os.listdir(root / "dirlink") == ["up"]
    assert (root / "dirlink" / "up").read_bytes() == b"up"


def test_symlink_absolute_target_inside_root(root):
    (root / "t").write_bytes(b"abs")
    os.symlink(str(root / "t"), root / "abs")
    assert os.readlink(root / "abs") == str(root / "t")
    assert (root / "abs").read_bytes() == b"abs"


def test_write_through_symlink_creates_target(root):
    os.symlink("created", root / "link")
    fd = os.open(root / "link", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"via link")
    finally:
        os.close(fd)
    assert (root / "created").read_bytes() == b"via link"
    assert stat.S_ISLNK(os.lstat(root / "link").st_mode)


def test_dangling_symlink_stat_enoent(root):
    os.symlink("nowhere", root / "link")
    assert _errno_of(os.stat, root / "link") == errno.ENOENT
    assert _errno_of(os.open, root / "link", os.O_RDONLY) == errno.ENOENT
    assert stat.S_ISLNK(os.lstat(root / "link").st_mode)


def test_symlink_loop_eloop(root):
    os.symlink("b", root / "a")
    os.symlink("a", root / "b")
    os.symlink("self", root / "self")
    assert _errno_of(os.stat, root / "a") == errno.ELOOP
    assert _errno_of(os.open, root / "a", os.O_RDONLY) == errno.ELOOP
    assert _errno_of(os.stat, root / "self") == errno.ELOOP
    assert _errno_of(os.stat, root / "self" / "child") == errno.ELOOP
    # the links themselves are fine
    assert os.readlink(root / "a") == "b"
    assert stat.S_ISLNK(os.lstat(root / "self").st_mode)


def test_o_nofollow_on_symlink_eloop(root):
    (root / "target").write_bytes(b"x")
    os.symlink("target", root / "link")
    assert _errno_of(os.open, root / "link", os.O_RDONLY | os.O_NOFOLLOW) == errno.ELOOP
    # O_NOFOLLOW only applies to the last component; a regular file opens fine
    fd = os.open(root / "target", os.O_RDONLY | os.O_NOFOLLOW)
    os.close(fd)


def test_symlink_existing_name_eexist(root):
    (root / "f").write_bytes(b"")
    os.symlink("x", root / "l")
    assert _errno_of(os.symlink, "y", root / "f") == errno.EEXIST
    assert _errno_of(os.symlink, "y", root / "l") == errno.EEXIST
    assert os.readlink(root / "l") == "x"


def test_readlink_on_non_symlink_einval(root):
    (root / "f").write_bytes(b"")
    (root / "d").mkdir()
    assert _errno_of(os.readlink, root / "f") == errno.EINVAL
    assert _errno_of(os.readlink, root / "d") == errno.EINVAL


def test_unlink_symlink_leaves_target(root):
    (root / "t").write_bytes(b"t")
    os.symlink("t", root / "l")
    os.unlink(root / "l")
    assert os.listdir(root) == ["t"]
    assert (root / "t").read_bytes() == b"t"


def test_symlink_to_directory_rmdir_enotdir_unlink_works(root):
    (root / "d").mkdir()
    os.symlink("d", root / "l")
    assert _errno_of(os.rmdir, root / "l") == errno.ENOTDIR
    os.unlink(root / "l")
    assert os.listdir(root) == ["d"]
