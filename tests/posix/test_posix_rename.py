"""rename(2) and renameat2(2)."""

from __future__ import annotations

import ctypes
import errno
import os
import platform

import pytest

AT_FDCWD = -100
RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1
_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "riscv64": 276, "i686": 353, "i386": 353}


@pytest.fixture
def renameat2(libc):
    """renameat2(old, new, flags) raising OSError like os.rename does."""
    fn = getattr(libc, "renameat2", None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int

        def call(old, new, flags):
            return fn(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags)

    else:
        nr = _SYS_RENAMEAT2.get(platform.machine())
        if nr is None:
            pytest.skip(f"no renameat2 in libc and syscall number unknown on {platform.machine()}")
        libc.syscall.restype = ctypes.c_long

        def call(old, new, flags):
            return libc.syscall(
                ctypes.c_long(nr),
                ctypes.c_int(AT_FDCWD),
                ctypes.c_char_p(os.fsencode(old)),
                ctypes.c_int(AT_FDCWD),
                ctypes.c_char_p(os.fsencode(new)),
                ctypes.c_uint(flags),
            )

    def renameat2(old, new, flags=0):
        ctypes.set_errno(0)
        if call(old, new, flags) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), str(old), None, str(new))

    return renameat2


def _errno_of(fn, *args):
    with pytest.raises(OSError) as exc:
        fn(*args)
    return exc.value.errno


# --- plain rename ---------------------------------------------------------


def test_rename_file_to_new_name(root):
    (root / "a").write_bytes(b"A")
    ino = os.stat(root / "a").st_ino
    os.rename(root / "a", root / "b")
    assert os.listdir(root) == ["b"]
    assert (root / "b").read_bytes() == b"A"
    assert os.stat(root / "b").st_ino == ino


def test_rename_file_over_file_replaces(root):
    (root / "src").write_bytes(b"source")
    (root / "dst").write_bytes(b"destination")
    src_ino = os.stat(root / "src").st_ino
    fd = os.open(root / "dst", os.O_RDONLY)  # hold the old destination open
    try:
        os.rename(root / "src", root / "dst")
        assert os.listdir(root) == ["dst"]
        assert (root / "dst").read_bytes() == b"source"
        assert os.stat(root / "dst").st_ino == src_ino
        # the old destination inode is gone from the namespace ...
        st = os.fstat(fd)
        assert st.st_nlink == 0
        assert st.st_ino != src_ino
        # ... but its data is still readable through the open descriptor
        assert os.pread(fd, 100, 0) == b"destination"
    finally:
        os.close(fd)


def test_rename_over_file_keeps_other_hard_link(root):
    (root / "src").write_bytes(b"new")
    (root / "dst").write_bytes(b"old")
    os.link(root / "dst", root / "dst2")
    os.rename(root / "src", root / "dst")
    assert (root / "dst").read_bytes() == b"new"
    assert (root / "dst2").read_bytes() == b"old"
    assert os.stat(root / "dst2").st_nlink == 1


def test_rename_file_over_dir_eisdir(root):
    (root / "f").write_bytes(b"x")
    (root / "d").mkdir()
    assert _errno_of(os.rename, root / "f", root / "d") == errno.EISDIR
    assert (root / "f").read_bytes() == b"x"
    assert (root / "d").is_dir()


def test_rename_dir_over_file_enotdir(root):
    (root / "f").write_bytes(b"x")
    (root / "d").mkdir()
    assert _errno_of(os.rename, root / "d", root / "f") == errno.ENOTDIR
    assert (root / "f").read_bytes() == b"x"
    assert (root / "d").is_dir()


def test_rename_dir_over_empty_dir(root):
    (root / "src").mkdir()
    (root / "src" / "inner").write_bytes(b"in")
    (root / "dst").mkdir()
    src_ino = os.stat(root / "src").st_ino
    os.rename(root / "src", root / "dst")
    assert os.listdir(root) == ["dst"]
    assert os.stat(root / "dst").st_ino == src_ino
    assert (root / "dst" / "inner").read_bytes() == b"in"
    assert os.stat(root).st_nlink == 3


def test_rename_dir_over_non_empty_dir_enotempty(root):
    (root / "src").mkdir()
    (root / "dst").mkdir()
    (root / "dst" / "f").write_bytes(b"")
    # POSIX allows EEXIST as well; Linux returns ENOTEMPTY
    assert _errno_of(os.rename, root / "src", root / "dst") in (errno.ENOTEMPTY, errno.EEXIST)
    assert sorted(os.listdir(root)) == ["dst", "src"]
    assert os.listdir(root / "dst") == ["f"]


def test_rename_dir_into_own_subdir_einval(root):
    (root / "d" / "sub").mkdir(parents=True)
    assert _errno_of(os.rename, root / "d", root / "d" / "sub" / "moved") == errno.EINVAL
    assert _errno_of(os.rename, root / "d", root / "d" / "moved") == errno.EINVAL
    assert os.listdir(root) == ["d"]
    assert os.listdir(root / "d") == ["sub"]


def test_rename_to_itself_is_noop(root):
    (root / "f").write_bytes(b"same")
    (root / "d").mkdir()
    ino = os.stat(root / "f").st_ino
    os.rename(root / "f", root / "f")
    os.rename(root / "d", root / "d")
    assert sorted(os.listdir(root)) == ["d", "f"]
    assert (root / "f").read_bytes() == b"same"
    assert os.stat(root / "f").st_ino == ino


def test_rename_between_hard_links_of_same_file_is_noop(root):
    (root / "a").write_bytes(b"x")
    os.link(root / "a", root / "b")
    os.rename(root / "a", root / "b")
    # POSIX: if old and new are links to the same file, rename does nothing
    assert sorted(os.listdir(root)) == ["a", "b"]
    assert os.stat(root / "a").st_nlink == 2


def test_rename_symlink_renames_link_not_target(root):
    (root / "target").write_bytes(b"t")
    os.symlink("target", root / "link")
    os.rename(root / "link", root / "link2")
    assert sorted(os.listdir(root)) == ["link2", "target"]
    assert os.readlink(root / "link2") == "target"
    assert (root / "link2").read_bytes() == b"t"


def test_rename_missing_source_enoent(root):
    assert _errno_of(os.rename, root / "nope", root / "dst") == errno.ENOENT
    assert os.listdir(root) == []


def test_cross_directory_rename_updates_both_listings(root):
    (root / "a").mkdir()
    (root / "b").mkdir()
    (root / "a" / "f").write_bytes(b"moving")
    (root / "a" / "stay").write_bytes(b"")
    ino = os.stat(root / "a" / "f").st_ino
    os.rename(root / "a" / "f", root / "b" / "g")
    assert os.listdir(root / "a") == ["stay"]
    assert os.listdir(root / "b") == ["g"]
    assert (root / "b" / "g").read_bytes() == b"moving"
    assert os.stat(root / "b" / "g").st_ino == ino
    with pytest.raises(OSError) as exc:
        os.stat(root / "a" / "f")
    assert exc.value.errno == errno.ENOENT


def test_rename_directory_with_contents_across_directories(root):
    (root / "a" / "tree" / "x").mkdir(parents=True)
    (root / "a" / "tree" / "x" / "leaf").write_bytes(b"leaf")
    (root / "b").mkdir()
    inos = {p: os.stat(root / "a" / "tree" / p).st_ino for p in ["", "x", "x/leaf"]}
    os.rename(root / "a" / "tree", root / "b" / "tree2")
    assert os.listdir(root / "a") == []
    assert os.listdir(root / "b") == ["tree2"]
    for p, ino in inos.items():
        assert os.stat(root / "b" / "tree2" / p).st_ino == ino
    assert (root / "b" / "tree2" / "x" / "leaf").read_bytes() == b"leaf"
    assert os.stat(root / "b" / "tree2" / "..").st_ino == os.stat(root / "b").st_ino


def test_rename_preserves_inode_and_open_fd(root):
    (root / "f").write_bytes(b"data")
    ino = os.stat(root / "f").st_ino
    fd = os.open(root / "f", os.O_RDWR)
    try:
        os.rename(root / "f", root / "g")
        assert os.fstat(fd).st_ino == ino
        assert os.fstat(fd).st_nlink == 1
        os.pwrite(fd, b"DATA", 0)
    finally:
        os.close(fd)
    assert os.stat(root / "g").st_ino == ino
    assert (root / "g").read_bytes() == b"DATA"


def test_rename_then_recreate_old_name(root):
    (root / "a").write_bytes(b"first")
    os.rename(root / "a", root / "b")
    (root / "a").write_bytes(b"second")
    assert (root / "a").read_bytes() == b"second"
    assert (root / "b").read_bytes() == b"first"
    assert os.stat(root / "a").st_ino != os.stat(root / "b").st_ino


# --- renameat2 ------------------------------------------------------------


def test_renameat2_noreplace_existing_eexist(root, renameat2):
    (root / "a").write_bytes(b"A")
    (root / "b").write_bytes(b"B")
    assert _errno_of(renameat2, root / "a", root / "b", RENAME_NOREPLACE) == errno.EEXIST
    assert (root / "a").read_bytes() == b"A"
    assert (root / "b").read_bytes() == b"B"
    # also when the target is a directory or a dangling symlink
    (root / "d").mkdir()
    os.symlink("nowhere", root / "l")
    assert _errno_of(renameat2, root / "a", root / "d", RENAME_NOREPLACE) == errno.EEXIST
    assert _errno_of(renameat2, root / "a", root / "l", RENAME_NOREPLACE) == errno.EEXIST


def test_renameat2_noreplace_to_free_name(root, renameat2):
    (root / "a").write_bytes(b"A")
    renameat2(root / "a", root / "c", RENAME_NOREPLACE)
    assert os.listdir(root) == ["c"]
    assert (root / "c").read_bytes() == b"A"


def test_renameat2_exchange_swaps_files(root, renameat2):
    (root / "a").write_bytes(b"content of a")
    (root / "b").write_bytes(b"content of b")
    ino_a = os.stat(root / "a").st_ino
    ino_b = os.stat(root / "b").st_ino
    renameat2(root / "a", root / "b", RENAME_EXCHANGE)
    assert (root / "a").read_bytes() == b"content of b"
    assert (root / "b").read_bytes() == b"content of a"
    assert os.stat(root / "a").st_ino == ino_b
    assert os.stat(root / "b").st_ino == ino_a
    assert sorted(os.listdir(root)) == ["a", "b"]


def test_renameat2_exchange_file_and_directory_across_dirs(root, renameat2):
    (root / "p").mkdir()
    (root / "q").mkdir()
    (root / "p" / "f").write_bytes(b"file")
    (root / "q" / "d").mkdir()
    (root / "q" / "d" / "inner").write_bytes(b"inner")
    renameat2(root / "p" / "f", root / "q" / "d", RENAME_EXCHANGE)
    assert (root / "p" / "f").is_dir()
    assert (root / "p" / "f" / "inner").read_bytes() == b"inner"
    assert (root / "q" / "d").read_bytes() == b"file"
    assert os.stat(root / "p").st_nlink == 3
    assert os.stat(root / "q").st_nlink == 2
    assert os.stat(root / "p" / "f" / "..").st_ino == os.stat(root / "p").st_ino


def test_renameat2_exchange_missing_target_enoent(root, renameat2):
    (root / "a").write_bytes(b"A")
    assert _errno_of(renameat2, root / "a", root / "missing", RENAME_EXCHANGE) == errno.ENOENT
    assert os.listdir(root) == ["a"]
    assert (root / "a").read_bytes() == b"A"


def test_renameat2_noreplace_and_exchange_together_einval(root, renameat2):
    (root / "a").write_bytes(b"A")
    (root / "b").write_bytes(b"B")
    assert (
        _errno_of(renameat2, root / "a", root / "b", RENAME_NOREPLACE | RENAME_EXCHANGE)
        == errno.EINVAL
    )
    assert (root / "a").read_bytes() == b"A"
