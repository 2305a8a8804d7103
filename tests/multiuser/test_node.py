"""What `npm install` does as the `node` user (uid 1000) in a container: unpack a tarball with
executable bits and symlinks into a directory it owns, chmod what it unpacked, run a script from
it.  The same commands on a native directory and through the mount give the same tree."""

from __future__ import annotations

import io
import tarfile

import pytest
from userkit import ROOT, Who, host_problems

NODE = Who(1000, 1000)

SCRIPT = b'#!/bin/sh\necho "hello from $(id -u)"\n'


@pytest.fixture(scope="module")
def tarball(world):
    """A package as npm gets it: a script, data, a read-only file, a private directory and the
    .bin symlink to the script."""
    path = world / "pkg.tgz"
    with tarfile.open(path, "w:gz") as tar:

        def add(name, mode, data=b"", kind=tarfile.REGTYPE, target=""):
            info = tarfile.TarInfo(name)
            info.mode, info.type, info.linkname, info.size = mode, kind, target, len(data)
            info.uid = info.gid = 4242  # a packer's ids: a user cannot keep them, and doesn't
            tar.addfile(info, io.BytesIO(data) if data else None)

        add("package", 0o755, kind=tarfile.DIRTYPE)
        add("package/bin", 0o755, kind=tarfile.DIRTYPE)
        add("package/bin/cli.sh", 0o755, SCRIPT)
        add("package/lib", 0o700, kind=tarfile.DIRTYPE)
        add("package/lib/data.json", 0o644, b"{}\n")
        add("package/README", 0o444, b"read me\n")
        add("package/.bin", 0o755, kind=tarfile.DIRTYPE)
        add("package/.bin/cli", 0o777, kind=tarfile.SYMTYPE, target="../bin/cli.sh")
    path.chmod(0o644)
    return path


def _install(where, tarball):
    where.act(ROOT, [["mkdir", "app", 0o755], ["chown", "app", 1000, 1000]])
    return where.shell(
        NODE,
        f"set -e; cd app; tar -xzf {tarball}; chmod -R u+rwX,go-w,go+rX package; "
        "chmod 0755 package/bin/cli.sh; package/.bin/cli; "
        "find . -printf '%M %u %g %p %l\\n' | sort",
    )


def test_unpack_chmod_and_run_as_node(site, native, tarball):
    want = _install(native, tarball)
    assert want.returncode == 0, want.stderr
    assert "hello from 1000" in want.stdout
    got = _install(site, tarball)
    assert (got.returncode, got.stderr) == (0, "")
    assert got.stdout == want.stdout
    assert host_problems(site) == []
