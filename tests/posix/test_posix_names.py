"""Path names: lookup errors, wrong object types, name length limits, odd names."""

from __future__ import annotations

import errno
import os

import pytest


def _raises(errnum, fn, *args, **kwargs):
    with pytest.raises(OSError) as exc:
        fn(*args, **kwargs)
    assert exc.value.errno == errnum, (
        f"{fn.__name__}{args}: expected {errno.errorcode[errnum]}, "
        f"got {errno.errorcode.get(exc.value.errno, exc.value.errno)}"
    )


# --- ENOENT ---------------------------------------------------------------


def test_missing_enoent(root):
    m = root / "missing"
    _raises(errno.ENOENT, os.stat, m)
    _raises(errno.ENOENT, os.lstat, m)
    _raises(errno.ENOENT, os.open, m, os.O_RDONLY)
    _raises(errno.ENOENT, os.unlink, m)
    _raises(errno.ENOENT, os.rmdir, m)
    _raises(errno.ENOENT, os.listdir, m)
    _raises(errno.ENOENT, os.rename, m, root / "other")
    _raises(errno.ENOENT, os.chmod, m, 0o644)
    _raises(errno.ENOENT, os.readlink, m)
    _raises(errno.ENOENT, os.link, m, root / "other")
    assert not os.path.lexists(root / "other")


def test_missing_intermediate_component_enoent(root):
    m = root / "nodir" / "f"
    _raises(errno.ENOENT, os.stat, m)
    _raises(errno.ENOENT, os.open, m, os.O_CREAT | os.O_WRONLY, 0o644)
    _raises(errno.ENOENT, os.mkdir, m)
    _raises(errno.ENOENT, os.symlink, "x", m)
    assert os.listdir(root) == []


def test_rename_into_missing_directory_enoent(root):
    (root / "f").write_bytes(b"x")
    _raises(errno.ENOENT, os.rename, root / "f", root / "nodir" / "f")
    assert (root / "f").read_bytes() == b"x"


# --- ENOTDIR --------------------------------------------------------------


def test_file_as_directory_component_enotdir(root):
    f = root / "file"
    f.write_bytes(b"x")
    _raises(errno.ENOTDIR, os.stat, f / "child")
    _raises(errno.ENOTDIR, os.lstat, f / "child")
    _raises(errno.ENOTDIR, os.open, f / "child", os.O_RDONLY)
    _raises(errno.ENOTDIR, os.open, f / "child", os.O_CREAT | os.O_WRONLY, 0o644)
    _raises(errno.ENOTDIR, os.mkdir, f / "child")
    _raises(errno.ENOTDIR, os.unlink, f / "child")
    _raises(errno.ENOTDIR, os.listdir, f)
    _raises(errno.ENOTDIR, os.stat, str(f) + "/")


def test_open_o_directory_on_file_enotdir(root):
    (root / "f").write_bytes(b"x")
    _raises(errno.ENOTDIR, os.open, root / "f", os.O_RDONLY | os.O_DIRECTORY)


def test_dangling_symlink_path_component_enoent(root):
    os.symlink("nowhere", root / "link")
    _raises(errno.ENOENT, os.stat, root / "link" / "child")


# --- directories vs files -------------------------------------------------


def test_open_directory_for_writing_eisdir(root):
    d = root / "d"
    d.mkdir()
    _raises(errno.EISDIR, os.open, d, os.O_WRONLY)
    _raises(errno.EISDIR, os.open, d, os.O_RDWR)
    _raises(errno.EISDIR, os.open, d, os.O_WRONLY | os.O_TRUNC)
    # opening it read-only is fine, and read() on it says EISDIR
    fd = os.open(d, os.O_RDONLY)
    try:
        _raises(errno.EISDIR, os.read, fd, 10)
    finally:
        os.close(fd)


def test_unlink_directory_eisdir(root):
    d = root / "d"
    d.mkdir()
    _raises(errno.EISDIR, os.unlink, d)
    assert d.is_dir()


def test_rmdir_file_enotdir(root):
    f = root / "f"
    f.write_bytes(b"x")
    _raises(errno.ENOTDIR, os.rmdir, f)
    assert f.read_bytes() == b"x"


def test_rmdir_non_empty_enotempty(root):
    d = root / "d"
    d.mkdir()
    (d / "f").write_bytes(b"")
    _raises(errno.ENOTEMPTY, os.rmdir, d)
    (d / "f").unlink()
    (d / "sub").mkdir()
    _raises(errno.ENOTEMPTY, os.rmdir, d)
    (d / "sub").rmdir()
    os.rmdir(d)
    assert not os.path.lexists(d)


def test_rmdir_dot_einval(root):
    (root / "d").mkdir()
    _raises(errno.EINVAL, os.rmdir, str(root / "d") + "/.")
    assert (root / "d").is_dir()


def test_mkdir_existing_eexist(root):
    (root / "d").mkdir()
    (root / "f").write_bytes(b"")
    os.symlink("nowhere", root / "l")
    _raises(errno.EEXIST, os.mkdir, root / "d")
    _raises(errno.EEXIST, os.mkdir, root / "f")
    _raises(errno.EEXIST, os.mkdir, root / "l")
    assert not os.path.lexists(root / "nowhere")


def test_rmdir_then_recreate(root):
    d = root / "d"
    d.mkdir()
    os.rmdir(d)
    _raises(errno.ENOENT, os.stat, d)
    d.write_bytes(b"now a file")
    assert d.read_bytes() == b"now a file"


# --- name lengths ---------------------------------------------------------


def test_name_255_bytes_works(root):
    name = "n" * 255
    p = root / name
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"long")
    finally:
        os.close(fd)
    assert os.stat(p).st_size == 4
    assert os.listdir(root) == [name]
    assert p.read_bytes() == b"long"
    os.rename(p, root / ("m" * 255))
    assert os.listdir(root) == ["m" * 255]
    os.unlink(root / ("m" * 255))
    d = root / ("d" * 255)
    os.mkdir(d)
    assert os.listdir(root) == ["d" * 255]
    os.rmdir(d)
    assert os.listdir(root) == []


def test_name_255_bytes_multibyte_utf8(root):
    name = "\u00e9" * 127 + "x"  # 127 * 2 + 1 = 255 bytes
    assert len(os.fsencode(name)) == 255
    (root / name).write_bytes(b"x")
    assert os.listdir(root) == [name]


def test_name_256_bytes_enametoolong(root):
    name = "n" * 256
    p = root / name
    _raises(errno.ENAMETOOLONG, os.open, p, os.O_CREAT | os.O_WRONLY, 0o644)
    _raises(errno.ENAMETOOLONG, os.stat, p)
    _raises(errno.ENAMETOOLONG, os.lstat, p)
    _raises(errno.ENAMETOOLONG, os.mkdir, p)
    _raises(errno.ENAMETOOLONG, os.symlink, "x", p)
    multibyte = root / ("\u00e9" * 128)  # 256 bytes
    _raises(errno.ENAMETOOLONG, os.open, multibyte, os.O_CREAT | os.O_WRONLY, 0o644)
    assert os.listdir(root) == []


def test_rename_to_256_byte_name_enametoolong(root):
    (root / "f").write_bytes(b"")
    _raises(errno.ENAMETOOLONG, os.rename, root / "f", root / ("n" * 256))
    assert os.listdir(root) == ["f"]


# --- unusual but legal names ---------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "with space",
        " leading-and-trailing ",
        "new\nline",
        "tab\tand\\backslash",
        "quote'\"",
        "unicode-\u00e9\u4e2d\u6587-\U0001f600",
        "-dash",
        "...",
        ".hidden",
        "*?[glob]",
    ],
)
def test_unusual_names_round_trip(root, name):
    p = root / name
    p.write_bytes(name.encode())
    assert os.listdir(root) == [name]
    assert p.read_bytes() == name.encode()
    os.unlink(p)
    assert os.listdir(root) == []


def test_non_utf8_bytes_name_round_trip(root):
    name = b"latin1-\xe9\xff\x80"
    p = os.path.join(os.fsencode(root), name)
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    assert os.listdir(os.fsencode(root)) == [name]
    os.stat(p)
    os.unlink(p)
    assert os.listdir(root) == []


def test_names_are_case_sensitive(root):
    (root / "abc").write_bytes(b"lower")
    (root / "ABC").write_bytes(b"upper")
    assert sorted(os.listdir(root)) == ["ABC", "abc"]
    assert (root / "abc").read_bytes() == b"lower"
    assert (root / "ABC").read_bytes() == b"upper"
    _raises(errno.ENOENT, os.stat, root / "Abc")


def test_dot_and_dotdot_resolve(root):
    (root / "d").mkdir()
    (root / "f").write_bytes(b"x")
    assert os.stat(str(root / "d") + "/..").st_ino == os.stat(root).st_ino
    assert os.stat(str(root / "d") + "/.").st_ino == os.stat(root / "d").st_ino
    assert os.stat(str(root / "d") + "/../f").st_ino == os.stat(root / "f").st_ino
