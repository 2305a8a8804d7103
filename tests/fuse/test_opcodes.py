"""The opcode table row by row: each decodes a well-formed frame and answers with its reply type."""

import dataclasses
import errno
import logging
import os
import subprocess
import typing

import pytest

from bridgefs.fuse import abi, codec, wire
from bridgefs.fuse import requests as rq
from bridgefs.fuse.dispatch import Dispatcher
from bridgefs.fuse.filesystem import (
    Attr,
    AttrReply,
    DirEntry,
    Entry,
    FileSystem,
    Lock,
    Opened,
    StatFs,
)
from bridgefs.fuse.opcodes import ERRNO_ONLY, OPERATIONS
from bridgefs.fuse.replies import CopyOut, frame, parse_frame
from bridgefs.memfs import MemFS
from mounting import mounted

ROWS = list(OPERATIONS.values())

# sizeof(struct fuse_*_in) in linux/fuse.h (SETXATTR: FUSE_COMPAT_SETXATTR_IN_SIZE, as no
# SETXATTR_EXT is negotiated; INIT: the 16 bytes every kernel sends at least).
KERNEL_SIZES = {
    abi.Op.FORGET: 8,
    abi.Op.GETATTR: 16,
    abi.Op.SETATTR: 88,
    abi.Op.MKNOD: 16,
    abi.Op.MKDIR: 8,
    abi.Op.RENAME: 8,
    abi.Op.LINK: 8,
    abi.Op.OPEN: 8,
    abi.Op.READ: 40,
    abi.Op.WRITE: 40,
    abi.Op.RELEASE: 24,
    abi.Op.FSYNC: 16,
    abi.Op.SETXATTR: 8,
    abi.Op.GETXATTR: 8,
    abi.Op.LISTXATTR: 8,
    abi.Op.FLUSH: 24,
    abi.Op.INIT: 16,
    abi.Op.OPENDIR: 8,
    abi.Op.READDIR: 40,
    abi.Op.RELEASEDIR: 24,
    abi.Op.FSYNCDIR: 16,
    abi.Op.GETLK: 48,
    abi.Op.SETLK: 48,
    abi.Op.SETLKW: 48,
    abi.Op.ACCESS: 8,
    abi.Op.CREATE: 16,
    abi.Op.INTERRUPT: 8,
    abi.Op.BMAP: 16,
    abi.Op.IOCTL: 32,
    abi.Op.POLL: 24,
    abi.Op.BATCH_FORGET: 8,
    abi.Op.FALLOCATE: 32,
    abi.Op.READDIRPLUS: 40,
    abi.Op.RENAME2: 16,
    abi.Op.LSEEK: 24,
    abi.Op.COPY_FILE_RANGE: 56,
    abi.Op.TMPFILE: 16,
    abi.Op.STATX: 24,
    abi.Op.COPY_FILE_RANGE_64: 56,
}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_fixed_part_is_the_kernel_struct(row):
    assert row.layout.fixed_size == KERNEL_SIZES.get(row.op, 0)


# Values a real kernel could send and the canned filesystem below can answer.
_FIELD_VALUES = {
    "size": 4096,
    "out_size": 64,
    "major": 7,
    "minor": 38,
    "length": 3,
    "flags": 0,
    "target": 0,
}


def well_formed(row, unique=9):
    """A request of ``row`` with every field set, its sized tail agreeing with its size field."""
    cls = row.request
    hints = typing.get_type_hints(cls, include_extras=True)
    values = {}
    for i, f in enumerate(dataclasses.fields(cls)[1:]):
        mark = getattr(hints[f.name], "__metadata__", (None,))[0]
        if mark is wire.NAME:
            values[f.name] = f"name{i}".encode()
        elif mark is wire.REST or isinstance(mark, wire.SizedBy):
            values[f.name] = b"payload"
        elif f.name == "items":
            values[f.name] = ((5, 1), (6, 2))
        else:
            values[f.name] = _FIELD_VALUES.get(f.name, i + 1)
    tail = getattr(row.layout, "tail", None)
    if isinstance(tail, wire.SizedBy):
        values[tail.field] = len(values[row.layout.tail_field])
    return cls(rq.Header(row.op, unique, 1, 0, 0, 0), **values)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_every_row_decodes_a_well_formed_frame(row):
    req = well_formed(row)
    raw = codec.encode_request(req)
    assert len(raw) >= abi.IN_HEADER.size + row.layout.fixed_size
    assert codec.decode(raw) == req
    assert row.names == sum(
        1 for v in dataclasses.astuple(req) if isinstance(v, bytes) and v.startswith(b"name")
    )


_ATTR = Attr(ino=2, mode=0o100644, size=3)
_ENTRY = Entry(2, _ATTR)


class Canned(FileSystem):
    """Answers every operation with something valid, so that each row's reply can be checked."""

    def lookup(self, ctx, parent, name):
        return _ENTRY

    def mknod(self, ctx, parent, name, mode, rdev, umask):
        return _ENTRY

    def mkdir(self, ctx, parent, name, mode, umask):
        return _ENTRY

    def symlink(self, ctx, parent, name, target):
        return _ENTRY

    def link(self, ctx, ino, new_parent, new_name):
        return _ENTRY

    def unlink(self, ctx, parent, name):
        pass

    def rmdir(self, ctx, parent, name):
        pass

    def rename(self, ctx, parent, name, new_parent, new_name, flags):
        pass

    def getattr(self, ctx, ino, fh):
        return AttrReply(_ATTR)

    def setattr(self, ctx, ino, changes, fh):
        return AttrReply(_ATTR)

    def readlink(self, ctx, ino):
        return b"target"

    def access(self, ctx, ino, mask):
        pass

    def statfs(self, ctx, ino):
        return StatFs(blocks=10, bfree=5)

    def setxattr(self, ctx, ino, name, value, flags):
        pass

    def getxattr(self, ctx, ino, name):
        return b"value"

    def listxattr(self, ctx, ino):
        return [b"user.a"]

    def removexattr(self, ctx, ino, name):
        pass

    def open(self, ctx, ino, flags):
        return Opened(fh=7, keep_cache=True)

    def create(self, ctx, parent, name, mode, umask, flags):
        return _ENTRY, Opened(fh=7)

    def read(self, ctx, ino, fh, offset, size):
        return b"data"

    def write(self, ctx, ino, fh, offset, data, flags):
        return len(data)

    def flush(self, ctx, ino, fh, lock_owner):
        pass

    def release(self, ctx, ino, fh, flags):
        pass

    def fsync(self, ctx, ino, fh, datasync):
        pass

    def fallocate(self, ctx, ino, fh, offset, length, mode):
        pass

    def lseek(self, ctx, ino, fh, offset, whence):
        return 5

    def copy_file_range(self, ctx, ino_in, fh_in, off_in, ino_out, fh_out, off_out, length, flags):
        return length

    def getlk(self, ctx, ino, fh, owner, lock):
        return Lock(0, 10, 1, 42)

    def setlk(self, ctx, ino, fh, owner, lock, sleep, flock):
        pass

    def bmap(self, ctx, ino, block, blocksize):
        return 9

    def ioctl(self, ctx, ino, fh, cmd, arg, data, out_size):
        return 0, b"out"

    def poll(self, ctx, ino, fh, events):
        return 1

    def opendir(self, ctx, ino, flags):
        return Opened(fh=8, cache_dir=True)

    def readdir(self, ctx, ino, fh, offset, plus):
        return [DirEntry(b"a", 2, 8, 1, _ENTRY)]

    def releasedir(self, ctx, ino, fh):
        pass

    def fsyncdir(self, ctx, ino, fh, datasync):
        pass

    def syncfs(self, ctx, ino):
        pass


def _initialized(fs):
    d = Dispatcher(fs)
    flags = int(abi.InitFlag.MAX_PAGES)
    init = rq.Init(rq.Header(abi.Op.INIT, 1, 0, 0, 0, 0), 7, 38, 1 << 20, flags)
    assert d.respond(codec.encode_request(init)).failed is False
    return d


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_every_row_answers_with_its_reply_type(row, caplog):
    d = Dispatcher(Canned()) if row.op == abi.Op.INIT else _initialized(Canned())
    out = d.respond(codec.encode_request(well_formed(row)))
    assert "malformed" not in caplog.text
    if row.op == abi.Op.INTERRUPT:
        # not in flight: EAGAIN, so that the kernel sends it again or drops it
        assert parse_frame(b"".join(out.chunks))[1] == errno.EAGAIN
        return
    if not row.answered:
        assert out.chunks is None
        return
    unique, err, payload = parse_frame(b"".join(out.chunks))
    assert unique == 9
    if row.reply == ERRNO_ONLY:
        assert err in (errno.ENOSYS, errno.EOPNOTSUPP)
        return
    assert err == 0
    assert type(out.reply) in row.reply
    back = type(out.reply).unpack(payload)
    assert frame(unique, back) == frame(unique, out.reply)


def test_copy_file_range_64_carries_a_count_past_4_gib():
    row = OPERATIONS[abi.Op.COPY_FILE_RANGE_64]
    req = dataclasses.replace(well_formed(row), length=5 << 30)
    out = _initialized(Canned()).respond(codec.encode_request(req))
    _, err, payload = parse_frame(b"".join(out.chunks))
    assert err == 0 and CopyOut.unpack(payload) == CopyOut(5 << 30)


def test_an_opcode_newer_than_the_table_is_answered_enosys_not_malformed(caplog):
    d = _initialized(Canned())
    raw = abi.IN_HEADER.pack(abi.IN_HEADER.size + 8, 54, 33, 1, 0, 0, 0, 0, 0) + bytes(8)
    with caplog.at_level(logging.INFO, logger="bridgefs.fuse.dispatch"):
        for _ in range(3):
            out = d.respond(raw)
            assert parse_frame(b"".join(out.chunks))[:2] == (33, errno.ENOSYS)
    assert "malformed" not in caplog.text
    assert caplog.text.count("opcode 54") == 1  # said once, however often the kernel asks


def test_the_kernel_copy_and_statx_are_answered(tmp_path, caplog):
    """A kernel of 7.45 sends COPY_FILE_RANGE_64 for copy_file_range(2), and may send STATX for a
    birth time: both are served (the second with ENOSYS, falling back to GETATTR)."""
    with (
        caplog.at_level(logging.WARNING, logger="bridgefs.fuse"),
        mounted(MemFS(), tmp_path / "m") as s,
    ):
        src, dst = os.path.join(s.mountpoint, "src"), os.path.join(s.mountpoint, "dst")
        blob = os.urandom(300_000)
        with open(src, "wb") as f:
            f.write(blob)
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            copied = 0
            while copied < len(blob):
                n = os.copy_file_range(fin.fileno(), fout.fileno(), len(blob) - copied)
                assert n > 0
                copied += n
        with open(dst, "rb") as f:
            assert f.read() == blob
        stats = s.stats()
        wide, legacy = (
            stats.get(op, (0, 0, 0))
            for op in (abi.Op.COPY_FILE_RANGE_64.name, abi.Op.COPY_FILE_RANGE.name)
        )
        assert wide[0] + legacy[0] >= 1 and wide[2] == legacy[2] == 0
        if wide[0]:
            assert legacy[0] == 0  # the kernel had no reason to fall back
        birth = subprocess.run(["stat", "-c", "%W", dst], capture_output=True, text=True)
        assert birth.returncode == 0, birth.stderr
    assert "malformed" not in caplog.text
