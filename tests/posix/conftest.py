"""Fixtures for the POSIX behaviour suite.

Every test in ``tests/posix`` takes the ``root`` fixture: an empty directory
on the filesystem under test.  The suite is written once and run against each
backend named in ``BACKENDS``; for a backend called ``NAME`` a fixture called
``NAME_root`` must exist (``native_root`` is defined here, the others are
provided by ``tests/conftest.py``).  To add a backend, append its name::

    BACKENDS = ["native", "memfs", "remote_unix", "remote_tcp"]

The tests assert only behaviour that ext4 and tmpfs share (values and errno
numbers of ordinary Linux system calls); they never look outside ``root``
except for the text of symlink targets, which are only readlink()ed/lstat()ed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pathlib
import uuid

import pytest

BACKENDS = ["native", "memfs", "remote_unix", "remote_tcp"]


@pytest.fixture(params=BACKENDS)
def root(request) -> pathlib.Path:
    """An empty directory on the filesystem under test."""
    return request.getfixturevalue(f"{request.param}_root")


@pytest.fixture
def native_root(tmp_path) -> pathlib.Path:
    """An empty directory on the native filesystem holding pytest's tmp_path."""
    d = tmp_path / "native-root"
    d.mkdir()
    return d


@pytest.fixture
def backend(request) -> str:
    """Name of the backend the current test runs against (e.g. ``"native"``)."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None:
        return "native"
    return callspec.params.get("root", "native")


@pytest.fixture
def xattr_root(root, backend) -> pathlib.Path:
    """``root``, after checking that user.* extended attributes work there.

    Only the native backend may lack user xattrs (that depends on the host's
    temporary filesystem, which is not under test); there the tests are
    skipped.  On every other backend a failing probe is a test failure.
    """
    probe = root / f".xattr-probe-{uuid.uuid4().hex}"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.bridgefs-probe", b"1")
    except OSError as exc:
        if backend == "native" and exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            pytest.skip(
                f"native temporary directory {root} does not support user.* xattrs "
                f"({errno.errorcode.get(exc.errno, exc.errno)}); this is a property of "
                "the host filesystem, not of the code under test"
            )
        raise
    finally:
        probe.unlink()
    return root


@pytest.fixture(scope="session")
def libc() -> ctypes.CDLL:
    """The C library, loaded with ``use_errno=True`` (read errno with ctypes.get_errno())."""
    return ctypes.CDLL(None, use_errno=True)
