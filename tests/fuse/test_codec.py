"""The sans-I/O codec: every frame decodes to a request or a Malformed, and replies round-trip."""

import dataclasses
import errno
import logging
import struct
import typing

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridgefs.fuse import abi, codec, notify, wire
from bridgefs.fuse import requests as rq
from bridgefs.fuse.dirents import pack_dirents, unpack_dirents
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
from bridgefs.fuse.opcodes import OPERATIONS
from bridgefs.fuse.replies import (
    AttrOut,
    BmapOut,
    CreateOut,
    Data,
    Empty,
    EntryOut,
    InitOut,
    IoctlOut,
    LkOut,
    LseekOut,
    OpenOut,
    PollOut,
    StatFsOut,
    WriteOut,
    XattrSize,
    frame,
    parse_frame,
)

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
name = st.binary(min_size=1, max_size=300).filter(lambda b: b"\0" not in b)
headers = st.builds(rq.Header, opcode=st.just(0), unique=u64, nodeid=u64, uid=u32, gid=u32, pid=u32)


def request_strategy(row):
    """Requests of one opcode, with every field drawn as wide as its wire type."""
    cls = row.request
    hints = typing.get_type_hints(cls, include_extras=True)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name == "header":
            continue
        mark = getattr(hints[f.name], "__metadata__", (None,))[0]
        if mark is wire.NAME:
            kwargs[f.name] = name
        elif mark is wire.REST or isinstance(mark, wire.SizedBy):
            kwargs[f.name] = st.binary(max_size=2000)
        elif f.name == "items":
            kwargs[f.name] = st.lists(st.tuples(u64, u64), max_size=50).map(tuple)
        else:
            kwargs[f.name] = u64 if mark == wire.Int("Q") else u32
    return st.builds(cls, header=headers, **kwargs).map(lambda r: _fix(row, r))


def _fix(row, req):
    """Make sized payloads agree with their size fields and put the right opcode in the header."""
    changes = {"header": dataclasses.replace(req.header, opcode=row.op)}
    tail = getattr(row.layout, "tail", None)
    if isinstance(tail, wire.SizedBy):
        changes[tail.field] = len(getattr(req, row.layout.tail_field))
    return dataclasses.replace(req, **changes)


ALL_REQUESTS = list(OPERATIONS.values())


def test_every_opcode_of_7_38_has_a_decoder():
    assert set(OPERATIONS) == set(abi.Op)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_requests_round_trip(data):
    row = data.draw(st.sampled_from(ALL_REQUESTS))
    req = data.draw(request_strategy(row))
    assert codec.decode(codec.encode_request(req)) == req


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_random_bytes_never_raise(frame_bytes):
    out = codec.decode(frame_bytes)
    assert isinstance(out, (rq.Request, rq.Malformed))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_frames_never_raise(data):
    row = data.draw(st.sampled_from(ALL_REQUESTS))
    good = bytearray(codec.encode_request(data.draw(request_strategy(row))))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(good) - 1))
        good[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(good)))
    mutated = bytes(good[:cut])
    if data.draw(st.booleans()):
        # keep the length field honest so the body parsers, not the length check, see the damage
        mutated = struct.pack("<I", len(mutated)) + mutated[4:] if len(mutated) >= 4 else mutated
    out = codec.decode(mutated)
    assert isinstance(out, (rq.Request, rq.Malformed))


class _Refuses(FileSystem):
    """A filesystem whose every method blows up: the dispatcher must still answer."""

    def __getattribute__(self, item):
        if item in ("init", "destroy"):
            return lambda: None
        if item.startswith("__"):
            return object.__getattribute__(self, item)
        raise RuntimeError("boom")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_dispatcher_answers_every_frame(data):
    dispatcher = Dispatcher(FileSystem())
    dispatcher.respond(
        codec.encode_request(
            rq.Init(
                rq.Header(abi.Op.INIT, 1, 0, 0, 0, 0), 7, 38, 1 << 20, int(abi.InitFlag.MAX_PAGES)
            )
        )
    )
    row = data.draw(st.sampled_from(ALL_REQUESTS))
    raw = codec.encode_request(data.draw(request_strategy(row)))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    logging.disable(logging.CRITICAL)
    try:
        out = dispatcher.respond(raw)
    finally:
        logging.disable(logging.NOTSET)
    req = codec.decode(raw)
    if isinstance(req, rq.Malformed) and req.unique is None:
        assert out.chunks is None  # a logged drop
    elif isinstance(req, rq.Interrupt):
        # an interrupt for a request not in flight is answered EAGAIN (the kernel retries or drops)
        assert out.chunks is None or parse_frame(b"".join(out.chunks))[1] == errno.EAGAIN
    elif isinstance(req, rq.Request) and not OPERATIONS[req.header.opcode].answered:
        assert out.chunks is None
    elif out.chunks is not None:
        unique, err, _ = parse_frame(b"".join(out.chunks))
        assert err >= 0


def test_unknown_opcode_is_enosys():
    raw = abi.IN_HEADER.pack(abi.IN_HEADER.size, 9999, 77, 1, 0, 0, 0, 0, 0)
    out = Dispatcher(FileSystem()).respond(raw)
    assert parse_frame(b"".join(out.chunks))[:2] == (77, errno.ENOSYS)


def test_filesystem_exception_becomes_eio(caplog):
    d = Dispatcher(_Refuses())
    d.respond(codec.encode_request(rq.Init(rq.Header(abi.Op.INIT, 1, 0, 0, 0, 0), 7, 38, 0, 0)))
    out = d.respond(codec.encode_request(rq.Named(rq.Header(abi.Op.LOOKUP, 5, 1, 0, 0, 0), b"x")))
    assert parse_frame(b"".join(out.chunks))[:2] == (5, errno.EIO)
    assert "boom" in caplog.text


def test_init_negotiates_1mib_requests():
    d = Dispatcher(FileSystem())
    offered = int(
        abi.InitFlag.MAX_PAGES
        | abi.InitFlag.DO_READDIRPLUS
        | abi.InitFlag.ASYNC_READ
        | abi.InitFlag.WRITEBACK_CACHE
    )
    out = d.respond(
        codec.encode_request(
            rq.Init(rq.Header(abi.Op.INIT, 1, 0, 0, 0, 0), 7, 44, 1 << 17, offered)
        )
    )
    _, err, payload = parse_frame(b"".join(out.chunks))
    init = InitOut.unpack(payload)
    assert err == 0 and init.minor == 38 and init.max_write == 1 << 20 and init.max_pages == 256
    assert init.flags & abi.InitFlag.DO_READDIRPLUS
    assert not init.flags & abi.InitFlag.WRITEBACK_CACHE  # only when asked for


attrs = st.builds(
    Attr,
    ino=u64,
    mode=u32,
    nlink=u32,
    uid=u32,
    gid=u32,
    rdev=u32,
    size=u64,
    blocks=u64,
    atime_ns=st.integers(-(2**62), 2**62),
    mtime_ns=st.integers(-(2**62), 2**62),
    ctime_ns=st.integers(-(2**62), 2**62),
    blksize=u32,
)
timeouts = st.integers(0, 10**6).map(lambda ms: ms / 1000)
entries = st.builds(
    Entry,
    ino=st.integers(1, 2**64 - 1),
    attr=attrs,
    entry_timeout=timeouts,
    attr_timeout=timeouts,
    generation=u64,
)
openeds = st.builds(
    Opened,
    fh=u64,
    keep_cache=st.booleans(),
    cache_dir=st.booleans(),
    direct_io=st.booleans(),
    nonseekable=st.booleans(),
    noflush=st.booleans(),
)
replies = st.one_of(
    st.just(Empty()),
    st.builds(EntryOut, entries),
    st.builds(AttrOut, st.builds(AttrReply, attrs, timeouts)),
    st.builds(OpenOut, openeds),
    st.builds(CreateOut, entries, openeds),
    st.builds(WriteOut, u32),
    st.builds(StatFsOut, st.builds(StatFs, u64, u64, u64, u64, u64, u32, u32, u32)),
    st.builds(Data, st.binary(max_size=4096)),
    st.builds(XattrSize, u32),
    st.builds(LkOut, st.builds(Lock, u64, u64, u32, u32)),
    st.builds(BmapOut, u64),
    st.builds(LseekOut, u64),
    st.builds(PollOut, u32),
    st.builds(IoctlOut, st.integers(-(2**31), 2**31 - 1), st.binary(max_size=100)),
    st.builds(
        InitOut,
        st.just(7),
        st.integers(31, 38),
        u32,
        u64,
        st.integers(0, 65535),
        st.integers(0, 65535),
        u32,
        u32,
        st.integers(0, 65535),
    ),
)


@given(replies, u64)
def test_replies_round_trip(reply, unique):
    got_unique, err, payload = parse_frame(b"".join(frame(unique, reply)))
    assert (got_unique, err) == (unique, 0)
    back = type(reply).unpack(payload)
    # Timeouts travel as seconds + nanoseconds, so compare what goes on the wire.
    assert frame(unique, back) == frame(unique, reply)
    if not isinstance(reply, (EntryOut, AttrOut, CreateOut)):
        assert back == reply


def _close(a, b):
    return abs(a - b) < 1e-6


@given(
    st.lists(st.tuples(name, st.integers(1, 2**63), st.integers(0, 15)), max_size=40),
    st.integers(0, 8192),
    st.booleans(),
)
def test_dirents_fit_and_round_trip(items, size, plus):
    recs = [
        DirEntry(n, ino, t, i + 1, Entry(ino, Attr(ino=ino, mode=0o100644)) if plus else None)
        for i, (n, ino, t) in enumerate(items)
    ]
    data, packed = pack_dirents(recs, size, plus)
    assert len(data) <= size
    assert packed == recs[: len(packed)]
    back = list(unpack_dirents(data, plus))
    assert [(b[0], b[1], b[2], b[3]) for b in back] == [
        (r.ino, r.offset, r.dtype, r.name) for r in packed
    ]


def test_notifications_layout():
    code, body = notify.parse(b"".join(notify.inval_entry(5, b"name")))
    assert code == abi.Notify.INVAL_ENTRY and body == struct.pack("<QII", 5, 4, 0) + b"name\0"
    code, body = notify.parse(b"".join(notify.inval_inode(9, -1, 0)))
    assert code == abi.Notify.INVAL_INODE and struct.unpack("<Qqq", body) == (9, -1, 0)
    code, body = notify.parse(b"".join(notify.delete(1, 2, b"x")))
    assert code == abi.Notify.DELETE and body == struct.pack("<QQII", 1, 2, 1, 0) + b"x\0"
    code, body = notify.parse(b"".join(notify.store(3, 4096, b"abc")))
    assert code == abi.Notify.STORE and body == struct.pack("<QQII", 3, 4096, 3, 0) + b"abc"
