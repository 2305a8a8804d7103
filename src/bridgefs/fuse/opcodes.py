"""One row per opcode: what the kernel sends with it, what answers it, whether it changes anything.

A new operation is a row here, a request class in requests.py when its body is new, a ``do_<name>``
method on the Dispatcher, and a FileSystem method that answers ENOSYS by default.  The Dispatcher
refuses to start when a row has no method, and tests/fuse/test_opcodes.py drives every row through
the decoder and the dispatcher.

``reply`` lists the reply types a success may take; ``NO_REPLY`` marks the requests the kernel
expects no answer to (an answer would be an error on the device; INTERRUPT alone may get EAGAIN,
see Dispatcher.respond), ``ERRNO_ONLY`` those this client always refuses.  ``mutates`` marks the
operations that change names, attributes, contents or extended attributes whenever they succeed
(OPEN with O_TRUNC is left out: it changes something only with that flag, which a read-only mount
refuses at open).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import requests as rq
from .abi import Op
from .replies import (
    AttrOut,
    BmapOut,
    CopyOut,
    CreateOut,
    Data,
    DirData,
    Empty,
    EntryOut,
    InitOut,
    IoctlOut,
    LkOut,
    LseekOut,
    OpenOut,
    PollOut,
    Reply,
    StatFsOut,
    WriteOut,
    XattrSize,
)
from .wire import Layout, StructLayout

NO_REPLY = None
ERRNO_ONLY: tuple[type[Reply], ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    op: Op
    request: type[rq.Request]
    reply: tuple[type[Reply], ...] | None
    mutates: bool
    layout: Layout  # reads ``request`` from the body

    @property
    def name(self) -> str:
        return self.op.name

    @property
    def names(self) -> int:
        """How many NUL-terminated names the body carries."""
        return self.layout.names

    @property
    def answered(self) -> bool:
        return self.reply is not None


_layouts: dict[type[rq.Request], Layout] = {}


def _row(
    op: Op,
    request: type[rq.Request],
    reply: tuple[type[Reply], ...] | None,
    *,
    mutates: bool = False,
    layout: Layout | None = None,
) -> Operation:
    if layout is None:
        layout = _layouts.get(request)
        if layout is None:
            layout = _layouts[request] = StructLayout(request)
    return Operation(op, request, reply, mutates, layout)


# fmt: off
_ROWS = (
    #    opcode                 request body      success reply        (mutates, own decoder)
    _row(Op.LOOKUP,             rq.Named,         (EntryOut,)),
    _row(Op.FORGET,             rq.Forget,        NO_REPLY),
    _row(Op.GETATTR,            rq.GetAttr,       (AttrOut,)),
    _row(Op.SETATTR,            rq.SetAttrReq,    (AttrOut,),          mutates=True),
    _row(Op.READLINK,           rq.Bare,          (Data,)),
    _row(Op.SYMLINK,            rq.Symlink,       (EntryOut,),         mutates=True),
    _row(Op.MKNOD,              rq.MkNod,         (EntryOut,),         mutates=True),
    _row(Op.MKDIR,              rq.MkDir,         (EntryOut,),         mutates=True),
    _row(Op.UNLINK,             rq.Named,         (Empty,),            mutates=True),
    _row(Op.RMDIR,              rq.Named,         (Empty,),            mutates=True),
    _row(Op.RENAME,             rq.Rename,        (Empty,),            mutates=True),
    _row(Op.LINK,               rq.Link,          (EntryOut,),         mutates=True),
    _row(Op.OPEN,               rq.Open,          (OpenOut,)),
    _row(Op.READ,               rq.Read,          (Data,)),
    _row(Op.WRITE,              rq.Write,         (WriteOut,),         mutates=True),
    _row(Op.STATFS,             rq.Bare,          (StatFsOut,)),
    _row(Op.RELEASE,            rq.Release,       (Empty,)),
    _row(Op.FSYNC,              rq.Fsync,         (Empty,)),
    _row(Op.SETXATTR,           rq.SetXattr,      (Empty,),            mutates=True),
    _row(Op.GETXATTR,           rq.GetXattr,      (XattrSize, Data)),
    _row(Op.LISTXATTR,          rq.ListXattr,     (XattrSize, Data)),
    _row(Op.REMOVEXATTR,        rq.Named,         (Empty,),            mutates=True),
    _row(Op.FLUSH,              rq.Flush,         (Empty,)),
    _row(Op.INIT,               rq.Init,          (InitOut,),          layout=rq.INIT_IN),
    _row(Op.OPENDIR,            rq.Open,          (OpenOut,)),
    _row(Op.READDIR,            rq.Read,          (Data,)),
    _row(Op.RELEASEDIR,         rq.Release,       (Empty,)),
    _row(Op.FSYNCDIR,           rq.Fsync,         (Empty,)),
    _row(Op.GETLK,              rq.Lk,            (LkOut,)),
    _row(Op.SETLK,              rq.Lk,            (Empty,)),
    _row(Op.SETLKW,             rq.Lk,            (Empty,)),
    _row(Op.ACCESS,             rq.Access,        (Empty,)),
    _row(Op.CREATE,             rq.Create,        (CreateOut,),        mutates=True),
    _row(Op.INTERRUPT,          rq.Interrupt,     NO_REPLY),
    _row(Op.BMAP,               rq.Bmap,          (BmapOut,)),
    _row(Op.DESTROY,            rq.Bare,          (Empty,)),
    _row(Op.IOCTL,              rq.Ioctl,         (IoctlOut,)),
    _row(Op.POLL,               rq.Poll,          (PollOut,)),
    _row(Op.NOTIFY_REPLY,       rq.NotifyReply,   NO_REPLY),
    _row(Op.BATCH_FORGET,       rq.BatchForget,   NO_REPLY,            layout=rq.BATCH_FORGET_IN),
    _row(Op.FALLOCATE,          rq.Fallocate,     (Empty,),            mutates=True),
    _row(Op.READDIRPLUS,        rq.Read,          (DirData,)),
    _row(Op.RENAME2,            rq.Rename2,       (Empty,),            mutates=True),
    _row(Op.LSEEK,              rq.Lseek,         (LseekOut,)),
    _row(Op.COPY_FILE_RANGE,    rq.CopyFileRange, (WriteOut,),         mutates=True),
    _row(Op.SETUPMAPPING,       rq.Mapping,       ERRNO_ONLY),
    _row(Op.REMOVEMAPPING,      rq.Mapping,       ERRNO_ONLY),
    _row(Op.SYNCFS,             rq.Bare,          (Empty,)),
    _row(Op.TMPFILE,            rq.Create,        ERRNO_ONLY,          mutates=True),
    _row(Op.STATX,              rq.Statx,         ERRNO_ONLY),
    _row(Op.COPY_FILE_RANGE_64, rq.CopyFileRange, (CopyOut,),          mutates=True),
)
# fmt: on


def _index(rows: tuple[Operation, ...]) -> dict[int, Operation]:
    table: dict[int, Operation] = {}
    for row in rows:
        if row.op in table:
            raise ValueError(f"two rows for {row.name}")
        table[int(row.op)] = row
    return table


OPERATIONS: dict[int, Operation] = _index(_ROWS)
MUTATING: frozenset[int] = frozenset(op for op, row in OPERATIONS.items() if row.mutates)


def name(opcode: int) -> str:
    """The kernel's name of ``opcode`` (its number when the table does not have it)."""
    row = OPERATIONS.get(opcode)
    return row.name if row is not None else str(opcode)
