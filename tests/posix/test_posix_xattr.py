"""Extended attributes in the user.* namespace.

Tests take ``xattr_root`` (see conftest.py), which skips only the native
backend when the host's temporary filesystem has no user xattr support.
"""

from __future__ import annotations

import errno
import os

import pytest


def _user_names(path, **kw):
    return sorted(n for n in os.listxattr(path, **kw) if n.startswith("user."))


def _errno_of(fn, *args, **kwargs):
    with pytest.raises(OSError) as exc:
        fn(*args, **kwargs)
    return exc.value.errno


def test_xattr_set_get_list_remove(xattr_root):
    p = xattr_root / "f"
    p.write_bytes(b"data")
    assert _user_names(p) == []
    os.setxattr(p, "user.one", b"1")
    os.setxattr(p, "user.two", b"second value")
    assert os.getxattr(p, "user.one") == b"1"
    assert os.getxattr(p, "user.two") == b"second value"
    assert _user_names(p) == ["user.one", "user.two"]
    os.removexattr(p, "user.one")
    assert _user_names(p) == ["user.two"]
    assert _errno_of(os.getxattr, p, "user.one") == errno.ENODATA
    # file content untouched
    assert p.read_bytes() == b"data"


def test_xattr_overwrite_value(xattr_root):
    p = xattr_root / "f"
    p.write_bytes(b"")
    os.setxattr(p, "user.k", b"a much longer first value")
    os.setxattr(p, "user.k", b"short")
    assert os.getxattr(p, "user.k") == b"short"
    os.setxattr(p, "user.k", b"")
    assert os.getxattr(p, "user.k") == b""


def test_xattr_binary_and_empty_values(xattr_root):
    p = xattr_root / "f"
    p.write_bytes(b"")
    binary = bytes(range(256)) * 4
    os.setxattr(p, "user.bin", binary)
    os.setxattr(p, "user.empty", b"")
    os.setxattr(p, "user.nul", b"\0")
    assert os.getxattr(p, "user.bin") == binary
    assert os.getxattr(p, "user.empty") == b""
    assert os.getxattr(p, "user.nul") == b"\0"
    assert _user_names(p) == ["user.bin", "user.empty", "user.nul"]


def test_xattr_create_on_existing_eexist(xattr_root):
    p = xattr_root / "f"
    p.write_bytes(b"")
    os.setxattr(p, "user.k", b"orig", os.XATTR_CREATE)
    assert _errno_of(os.setxattr, p, "user.k", b"new", os.XATTR_CREATE) == errno.EEXIST
    assert os.getxattr(p, "user.k") == b"orig"


def test_xattr_replace_on_missing_enodata(xattr_root):
    p = xattr_root / "f"
    p.write_bytes(b"")
    assert _errno_of(os.setxattr, p, "user.k", b"v", os.XATTR_REPLACE) == errno.ENODATA
    assert _user_names(p) == []
    os.setxattr(p, "user.k", b"v")
    os.setxattr(p, "user.k", b"w", os.XATTR_REPLACE)
    assert os.getxattr(p, "user.k") == b"w"


def test_xattr_get_and_remove_missing_enodata(xattr_root):
    p = xattr_root / "f"
    p.write_bytes(b"")
    assert _errno_of(os.getxattr, p, "user.missing") == errno.ENODATA
    assert _errno_of(os.removexattr, p, "user.missing") == errno.ENODATA


def test_xattr_on_missing_file_enoent(xattr_root):
    m = xattr_root / "missing"
    assert _errno_of(os.getxattr, m, "user.k") == errno.ENOENT
    assert _errno_of(os.setxattr, m, "user.k", b"v") == errno.ENOENT
    assert _errno_of(os.listxattr, m) == errno.ENOENT


def test_xattr_on_directory(xattr_root):
    d = xattr_root / "d"
    d.mkdir()
    os.setxattr(d, "user.dir", b"on a directory")
    assert os.getxattr(d, "user.dir") == b"on a directory"
    assert _user_names(d) == ["user.dir"]
    (d / "child").write_bytes(b"")
    assert _user_names(d / "child") == []


def test_xattr_through_fd(xattr_root):
    p = xattr_root / "f"
    p.write_bytes(b"")
    fd = os.open(p, os.O_RDONLY)
    try:
        os.setxattr(fd, "user.fd", b"via fd")
        assert os.getxattr(fd, "user.fd") == b"via fd"
        assert "user.fd" in os.listxattr(fd)
        os.removexattr(fd, "user.fd")
    finally:
        os.close(fd)
    assert _user_names(p) == []


def test_xattr_follows_symlink_by_default(xattr_root):
    (xattr_root / "t").write_bytes(b"")
    os.symlink("t", xattr_root / "l")
    os.setxattr(xattr_root / "l", "user.k", b"on target")
    assert os.getxattr(xattr_root / "t", "user.k") == b"on target"
    # Linux does not allow user.* attributes on symlinks themselves
    assert (
        _errno_of(os.setxattr, xattr_root / "l", "user.k", b"v", follow_symlinks=False)
        == errno.EPERM
    )


def test_xattr_survive_rename_and_follow_hard_links(xattr_root):
    p = xattr_root / "f"
    p.write_bytes(b"")
    os.setxattr(p, "user.k", b"v")
    os.rename(p, xattr_root / "g")
    assert os.getxattr(xattr_root / "g", "user.k") == b"v"
    os.link(xattr_root / "g", xattr_root / "h")
    os.setxattr(xattr_root / "h", "user.k2", b"v2")
    assert _user_names(xattr_root / "g") == ["user.k", "user.k2"]


def test_xattr_many_names(xattr_root):
    p = xattr_root / "f"
    p.write_bytes(b"")
    names = [f"user.attr{i:02d}" for i in range(20)]
    for i, n in enumerate(names):
        os.setxattr(p, n, str(i).encode())
    assert _user_names(p) == names
    for i, n in enumerate(names):
        assert os.getxattr(p, n) == str(i).encode()


def test_xattr_long_name_and_value(xattr_root):
    p = xattr_root / "f"
    p.write_bytes(b"")
    name = "user." + "n" * 200  # 205 bytes; the Linux limit is 255
    value = os.urandom(2000)
    os.setxattr(p, name, value)
    assert os.getxattr(p, name) == value
    too_long = "user." + "n" * 251  # 256 bytes
    assert _errno_of(os.setxattr, p, too_long, b"v") == errno.ERANGE


def test_xattr_unknown_namespace_not_supported(xattr_root):
    p = xattr_root / "f"
    p.write_bytes(b"")
    assert _errno_of(os.setxattr, p, "bogus.name", b"v") == errno.EOPNOTSUPP
