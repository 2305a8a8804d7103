"""What a guest root may and may not plant on the host: device nodes, setuid-root files, file
capabilities and other security xattrs; and the overlay's own attributes stay the server's."""

from __future__ import annotations

import errno
import os
import stat

import pytest
from userkit import ROOT, host_problems

# A version 2 file capability granting every capability (what `setcap all=ep` writes).
ALL_CAPS = bytes.fromhex("01000002ffffffff00000000ffffffff00000000")


def _errno(fn, *args):
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno
    return 0


def test_a_device_node_is_a_placeholder_or_refused(site, native):
    for where in (native, site):
        assert where.act(ROOT, [["mknod_chr", "null", 0o666, 1, 3]]) in (
            [["ok", None]],
            [["err", "EPERM"]],
        )
    if site.kind == "host":
        # Real ownership, but no device nodes on the host unless the server allows privilege.
        assert not (site.root / "null").exists()
        assert site.act(ROOT, [["mknod_chr", "null", 0o666, 1, 3]]) == [["err", "EPERM"]]
        assert host_problems(site) == []
        return
    guest, want = os.lstat(site.root / "null"), os.lstat(native.root / "null")
    assert (guest.st_mode, guest.st_rdev, guest.st_uid) == (want.st_mode, want.st_rdev, 0)
    on_host = os.lstat(site.host / "null")
    assert stat.S_ISREG(on_host.st_mode) and on_host.st_size == 0
    assert stat.S_IMODE(on_host.st_mode) == 0o600
    # The mount is nodev, and the server never opens a placeholder either.
    assert _errno(os.open, site.root / "null", os.O_RDONLY) == errno.EACCES
    assert host_problems(site) == []


def test_setuid_root_files(site):
    f = site.root / "su"
    f.write_bytes(b"#!/bin/sh\n")
    if site.kind == "host":
        assert _errno(os.chmod, f, 0o4755) == errno.EPERM
        assert _errno(os.chmod, f, 0o2755) == errno.EPERM  # setgid with group root
        os.chown(f, 1000, 1000)
        os.chmod(f, 0o4755)  # setuid to an ordinary user is an ordinary file mode
        assert os.lstat(site.host / "su").st_mode == stat.S_IFREG | 0o4755
    else:
        os.chmod(f, 0o6755)
        assert os.lstat(f).st_mode == stat.S_IFREG | 0o6755
        assert os.lstat(site.host / "su").st_mode == stat.S_IFREG | 0o755
    assert host_problems(site) == []


@pytest.mark.parametrize("name", ["security.capability", "trusted.bridgefs", "security.selinux"])
def test_security_xattrs_are_never_written(site, name):
    f = site.root / "tool"
    f.write_bytes(b"")
    value = ALL_CAPS if name == "security.capability" else b"x"
    assert _errno(os.setxattr, f, name, value) == errno.EOPNOTSUPP
    assert name not in os.listxattr(site.host / "tool")
    os.setxattr(f, "user.note", b"fine")  # user attributes pass as ever
    assert os.getxattr(site.host / "tool", "user.note") == b"fine"
    assert host_problems(site) == []


def test_the_overlay_is_hidden_from_the_guest(site):
    f = site.root / "f"
    f.write_bytes(b"")
    os.chmod(f, 0o640)
    os.chown(f, 1000, 1000)
    host_names = os.listxattr(site.host / "f")
    if site.kind == "host":  # real ownership: no overlay is written at all
        assert [n for n in host_names if n.startswith("user.bridgefs")] == []
        assert os.stat(site.host / "f").st_uid == 1000
    else:
        assert os.getxattr(site.host / "f", "user.bridgefs.owner")
    assert [n for n in os.listxattr(f) if n.startswith("user.bridgefs")] == []
    assert _errno(os.getxattr, f, "user.bridgefs.owner") == errno.ENODATA
    assert _errno(os.setxattr, f, "user.bridgefs.owner", b"v1 0 0 104755 0") == errno.EPERM
    assert _errno(os.removexattr, f, "user.bridgefs.owner") == errno.EPERM
    st = os.lstat(f)
    assert (st.st_uid, st.st_gid, st.st_mode) == (1000, 1000, stat.S_IFREG | 0o640)
