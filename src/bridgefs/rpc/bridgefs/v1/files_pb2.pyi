from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Status(_message.Message):
    __slots__ = ("errno", "parent")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    errno: int
    parent: Attr
    def __init__(self, errno: _Optional[int] = ..., parent: _Optional[_Union[Attr, _Mapping]] = ...) -> None: ...

class Attr(_message.Message):
    __slots__ = ("ino", "mode", "nlink", "uid", "gid", "rdev", "size", "blocks", "atime_ns", "mtime_ns", "ctime_ns", "blksize")
    INO_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NLINK_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    RDEV_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    ATIME_NS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    CTIME_NS_FIELD_NUMBER: _ClassVar[int]
    BLKSIZE_FIELD_NUMBER: _ClassVar[int]
    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    blksize: int
    def __init__(self, ino: _Optional[int] = ..., mode: _Optional[int] = ..., nlink: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., rdev: _Optional[int] = ..., size: _Optional[int] = ..., blocks: _Optional[int] = ..., atime_ns: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., ctime_ns: _Optional[int] = ..., blksize: _Optional[int] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("handle", "attr")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    ATTR_FIELD_NUMBER: _ClassVar[int]
    handle: int
    attr: Attr
    def __init__(self, handle: _Optional[int] = ..., attr: _Optional[_Union[Attr, _Mapping]] = ...) -> None: ...

class EntryReply(_message.Message):
    __slots__ = ("errno", "entry", "parent")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    errno: int
    entry: Entry
    parent: Attr
    def __init__(self, errno: _Optional[int] = ..., entry: _Optional[_Union[Entry, _Mapping]] = ..., parent: _Optional[_Union[Attr, _Mapping]] = ...) -> None: ...

class AttrReply(_message.Message):
    __slots__ = ("errno", "attr")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    ATTR_FIELD_NUMBER: _ClassVar[int]
    errno: int
    attr: Attr
    def __init__(self, errno: _Optional[int] = ..., attr: _Optional[_Union[Attr, _Mapping]] = ...) -> None: ...

class NodeRequest(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: int
    def __init__(self, handle: _Optional[int] = ...) -> None: ...

class NameRequest(_message.Message):
    __slots__ = ("parent", "name")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    parent: int
    name: bytes
    def __init__(self, parent: _Optional[int] = ..., name: _Optional[bytes] = ...) -> None: ...

class Caller(_message.Message):
    __slots__ = ("uid", "gid", "groups")
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    uid: int
    gid: int
    groups: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, uid: _Optional[int] = ..., gid: _Optional[int] = ..., groups: _Optional[_Iterable[int]] = ...) -> None: ...

class FileRequest(_message.Message):
    __slots__ = ("handle", "fh", "lock_owner", "more_fhs")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    FH_FIELD_NUMBER: _ClassVar[int]
    LOCK_OWNER_FIELD_NUMBER: _ClassVar[int]
    MORE_FHS_FIELD_NUMBER: _ClassVar[int]
    handle: int
    fh: int
    lock_owner: int
    more_fhs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, handle: _Optional[int] = ..., fh: _Optional[int] = ..., lock_owner: _Optional[int] = ..., more_fhs: _Optional[_Iterable[int]] = ...) -> None: ...

class HandshakeRequest(_message.Message):
    __slots__ = ("protocol_version", "share", "required_capabilities", "client_name")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    share: str
    required_capabilities: _containers.RepeatedScalarFieldContainer[str]
    client_name: str
    def __init__(self, protocol_version: _Optional[int] = ..., share: _Optional[str] = ..., required_capabilities: _Optional[_Iterable[str]] = ..., client_name: _Optional[str] = ...) -> None: ...

class HandshakeReply(_message.Message):
    __slots__ = ("errno", "protocol_version", "capabilities", "session", "root", "read_only", "max_io_size", "max_readdir_entries", "idle_timeout", "max_nodes", "ownership")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    MAX_IO_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_READDIR_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    OWNERSHIP_FIELD_NUMBER: _ClassVar[int]
    errno: int
    protocol_version: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    session: str
    root: Entry
    read_only: bool
    max_io_size: int
    max_readdir_entries: int
    idle_timeout: float
    max_nodes: int
    ownership: str
    def __init__(self, errno: _Optional[int] = ..., protocol_version: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ..., session: _Optional[str] = ..., root: _Optional[_Union[Entry, _Mapping]] = ..., read_only: _Optional[bool] = ..., max_io_size: _Optional[int] = ..., max_readdir_entries: _Optional[int] = ..., idle_timeout: _Optional[float] = ..., max_nodes: _Optional[int] = ..., ownership: _Optional[str] = ...) -> None: ...

class ForgetItem(_message.Message):
    __slots__ = ("handle", "count")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    handle: int
    count: int
    def __init__(self, handle: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class ForgetRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ForgetItem]
    def __init__(self, items: _Optional[_Iterable[_Union[ForgetItem, _Mapping]]] = ...) -> None: ...

class MkNodRequest(_message.Message):
    __slots__ = ("parent", "name", "mode", "rdev", "umask", "caller")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RDEV_FIELD_NUMBER: _ClassVar[int]
    UMASK_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    parent: int
    name: bytes
    mode: int
    rdev: int
    umask: int
    caller: Caller
    def __init__(self, parent: _Optional[int] = ..., name: _Optional[bytes] = ..., mode: _Optional[int] = ..., rdev: _Optional[int] = ..., umask: _Optional[int] = ..., caller: _Optional[_Union[Caller, _Mapping]] = ...) -> None: ...

class MkDirRequest(_message.Message):
    __slots__ = ("parent", "name", "mode", "umask", "caller")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UMASK_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    parent: int
    name: bytes
    mode: int
    umask: int
    caller: Caller
    def __init__(self, parent: _Optional[int] = ..., name: _Optional[bytes] = ..., mode: _Optional[int] = ..., umask: _Optional[int] = ..., caller: _Optional[_Union[Caller, _Mapping]] = ...) -> None: ...

class SymlinkRequest(_message.Message):
    __slots__ = ("parent", "name", "target", "caller")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    parent: int
    name: bytes
    target: bytes
    caller: Caller
    def __init__(self, parent: _Optional[int] = ..., name: _Optional[bytes] = ..., target: _Optional[bytes] = ..., caller: _Optional[_Union[Caller, _Mapping]] = ...) -> None: ...

class LinkRequest(_message.Message):
    __slots__ = ("handle", "new_parent", "new_name")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    NEW_PARENT_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    handle: int
    new_parent: int
    new_name: bytes
    def __init__(self, handle: _Optional[int] = ..., new_parent: _Optional[int] = ..., new_name: _Optional[bytes] = ...) -> None: ...

class RenameRequest(_message.Message):
    __slots__ = ("parent", "name", "new_parent", "new_name", "flags")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEW_PARENT_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    parent: int
    name: bytes
    new_parent: int
    new_name: bytes
    flags: int
    def __init__(self, parent: _Optional[int] = ..., name: _Optional[bytes] = ..., new_parent: _Optional[int] = ..., new_name: _Optional[bytes] = ..., flags: _Optional[int] = ...) -> None: ...

class GetAttrRequest(_message.Message):
    __slots__ = ("handle", "fh")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    FH_FIELD_NUMBER: _ClassVar[int]
    handle: int
    fh: int
    def __init__(self, handle: _Optional[int] = ..., fh: _Optional[int] = ...) -> None: ...

class SetAttrRequest(_message.Message):
    __slots__ = ("handle", "fh", "mode", "uid", "gid", "size", "atime_ns", "atime_now", "mtime_ns", "mtime_now", "kill_suidgid", "caller")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    FH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ATIME_NS_FIELD_NUMBER: _ClassVar[int]
    ATIME_NOW_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NOW_FIELD_NUMBER: _ClassVar[int]
    KILL_SUIDGID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    handle: int
    fh: int
    mode: int
    uid: int
    gid: int
    size: int
    atime_ns: int
    atime_now: bool
    mtime_ns: int
    mtime_now: bool
    kill_suidgid: bool
    caller: Caller
    def __init__(self, handle: _Optional[int] = ..., fh: _Optional[int] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., size: _Optional[int] = ..., atime_ns: _Optional[int] = ..., atime_now: _Optional[bool] = ..., mtime_ns: _Optional[int] = ..., mtime_now: _Optional[bool] = ..., kill_suidgid: _Optional[bool] = ..., caller: _Optional[_Union[Caller, _Mapping]] = ...) -> None: ...

class ReadLinkReply(_message.Message):
    __slots__ = ("errno", "target")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    errno: int
    target: bytes
    def __init__(self, errno: _Optional[int] = ..., target: _Optional[bytes] = ...) -> None: ...

class AccessRequest(_message.Message):
    __slots__ = ("handle", "mask")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    handle: int
    mask: int
    def __init__(self, handle: _Optional[int] = ..., mask: _Optional[int] = ...) -> None: ...

class StatFsReply(_message.Message):
    __slots__ = ("errno", "blocks", "bfree", "bavail", "files", "ffree", "bsize", "namelen", "frsize")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    BFREE_FIELD_NUMBER: _ClassVar[int]
    BAVAIL_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    FFREE_FIELD_NUMBER: _ClassVar[int]
    BSIZE_FIELD_NUMBER: _ClassVar[int]
    NAMELEN_FIELD_NUMBER: _ClassVar[int]
    FRSIZE_FIELD_NUMBER: _ClassVar[int]
    errno: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    bsize: int
    namelen: int
    frsize: int
    def __init__(self, errno: _Optional[int] = ..., blocks: _Optional[int] = ..., bfree: _Optional[int] = ..., bavail: _Optional[int] = ..., files: _Optional[int] = ..., ffree: _Optional[int] = ..., bsize: _Optional[int] = ..., namelen: _Optional[int] = ..., frsize: _Optional[int] = ...) -> None: ...

class SetXattrRequest(_message.Message):
    __slots__ = ("handle", "name", "value", "flags")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    handle: int
    name: bytes
    value: bytes
    flags: int
    def __init__(self, handle: _Optional[int] = ..., name: _Optional[bytes] = ..., value: _Optional[bytes] = ..., flags: _Optional[int] = ...) -> None: ...

class XattrRequest(_message.Message):
    __slots__ = ("handle", "name")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    handle: int
    name: bytes
    def __init__(self, handle: _Optional[int] = ..., name: _Optional[bytes] = ...) -> None: ...

class GetXattrReply(_message.Message):
    __slots__ = ("errno", "value")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    errno: int
    value: bytes
    def __init__(self, errno: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...

class ListXattrReply(_message.Message):
    __slots__ = ("errno", "names")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    errno: int
    names: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, errno: _Optional[int] = ..., names: _Optional[_Iterable[bytes]] = ...) -> None: ...

class OpenRequest(_message.Message):
    __slots__ = ("handle", "flags")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    handle: int
    flags: int
    def __init__(self, handle: _Optional[int] = ..., flags: _Optional[int] = ...) -> None: ...

class OpenReply(_message.Message):
    __slots__ = ("errno", "fh", "attr")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    FH_FIELD_NUMBER: _ClassVar[int]
    ATTR_FIELD_NUMBER: _ClassVar[int]
    errno: int
    fh: int
    attr: Attr
    def __init__(self, errno: _Optional[int] = ..., fh: _Optional[int] = ..., attr: _Optional[_Union[Attr, _Mapping]] = ...) -> None: ...

class CreateRequest(_message.Message):
    __slots__ = ("parent", "name", "mode", "umask", "flags", "no_handle", "caller")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UMASK_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    NO_HANDLE_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    parent: int
    name: bytes
    mode: int
    umask: int
    flags: int
    no_handle: bool
    caller: Caller
    def __init__(self, parent: _Optional[int] = ..., name: _Optional[bytes] = ..., mode: _Optional[int] = ..., umask: _Optional[int] = ..., flags: _Optional[int] = ..., no_handle: _Optional[bool] = ..., caller: _Optional[_Union[Caller, _Mapping]] = ...) -> None: ...

class CreateReply(_message.Message):
    __slots__ = ("errno", "entry", "fh", "parent", "created")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    FH_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    errno: int
    entry: Entry
    fh: int
    parent: Attr
    created: bool
    def __init__(self, errno: _Optional[int] = ..., entry: _Optional[_Union[Entry, _Mapping]] = ..., fh: _Optional[int] = ..., parent: _Optional[_Union[Attr, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("handle", "fh", "offset", "size")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    FH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    handle: int
    fh: int
    offset: int
    size: int
    def __init__(self, handle: _Optional[int] = ..., fh: _Optional[int] = ..., offset: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class ReadReply(_message.Message):
    __slots__ = ("errno", "data")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    errno: int
    data: bytes
    def __init__(self, errno: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("handle", "fh", "offset", "data", "flags")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    FH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    handle: int
    fh: int
    offset: int
    data: bytes
    flags: int
    def __init__(self, handle: _Optional[int] = ..., fh: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., flags: _Optional[int] = ...) -> None: ...

class WriteReply(_message.Message):
    __slots__ = ("errno", "written")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    errno: int
    written: int
    def __init__(self, errno: _Optional[int] = ..., written: _Optional[int] = ...) -> None: ...

class FsyncRequest(_message.Message):
    __slots__ = ("handle", "fh", "datasync")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    FH_FIELD_NUMBER: _ClassVar[int]
    DATASYNC_FIELD_NUMBER: _ClassVar[int]
    handle: int
    fh: int
    datasync: bool
    def __init__(self, handle: _Optional[int] = ..., fh: _Optional[int] = ..., datasync: _Optional[bool] = ...) -> None: ...

class FallocateRequest(_message.Message):
    __slots__ = ("handle", "fh", "offset", "length", "mode")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    FH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    handle: int
    fh: int
    offset: int
    length: int
    mode: int
    def __init__(self, handle: _Optional[int] = ..., fh: _Optional[int] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., mode: _Optional[int] = ...) -> None: ...

class LseekRequest(_message.Message):
    __slots__ = ("handle", "fh", "offset", "whence")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    FH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    WHENCE_FIELD_NUMBER: _ClassVar[int]
    handle: int
    fh: int
    offset: int
    whence: int
    def __init__(self, handle: _Optional[int] = ..., fh: _Optional[int] = ..., offset: _Optional[int] = ..., whence: _Optional[int] = ...) -> None: ...

class LseekReply(_message.Message):
    __slots__ = ("errno", "offset")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    errno: int
    offset: int
    def __init__(self, errno: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class CopyFileRangeRequest(_message.Message):
    __slots__ = ("handle_in", "fh_in", "offset_in", "handle_out", "fh_out", "offset_out", "length", "flags")
    HANDLE_IN_FIELD_NUMBER: _ClassVar[int]
    FH_IN_FIELD_NUMBER: _ClassVar[int]
    OFFSET_IN_FIELD_NUMBER: _ClassVar[int]
    HANDLE_OUT_FIELD_NUMBER: _ClassVar[int]
    FH_OUT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_OUT_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    handle_in: int
    fh_in: int
    offset_in: int
    handle_out: int
    fh_out: int
    offset_out: int
    length: int
    flags: int
    def __init__(self, handle_in: _Optional[int] = ..., fh_in: _Optional[int] = ..., offset_in: _Optional[int] = ..., handle_out: _Optional[int] = ..., fh_out: _Optional[int] = ..., offset_out: _Optional[int] = ..., length: _Optional[int] = ..., flags: _Optional[int] = ...) -> None: ...

class CopyFileRangeReply(_message.Message):
    __slots__ = ("errno", "copied")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    COPIED_FIELD_NUMBER: _ClassVar[int]
    errno: int
    copied: int
    def __init__(self, errno: _Optional[int] = ..., copied: _Optional[int] = ...) -> None: ...

class ReadDirRequest(_message.Message):
    __slots__ = ("handle", "fh", "offset", "plus", "max_entries", "subtree_records")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    FH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PLUS_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SUBTREE_RECORDS_FIELD_NUMBER: _ClassVar[int]
    handle: int
    fh: int
    offset: int
    plus: bool
    max_entries: int
    subtree_records: int
    def __init__(self, handle: _Optional[int] = ..., fh: _Optional[int] = ..., offset: _Optional[int] = ..., plus: _Optional[bool] = ..., max_entries: _Optional[int] = ..., subtree_records: _Optional[int] = ...) -> None: ...

class SubListing(_message.Message):
    __slots__ = ("handle", "entries")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    handle: int
    entries: _containers.RepeatedCompositeFieldContainer[DirEntry]
    def __init__(self, handle: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[DirEntry, _Mapping]]] = ...) -> None: ...

class DirEntry(_message.Message):
    __slots__ = ("name", "ino", "dtype", "offset", "entry")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    name: bytes
    ino: int
    dtype: int
    offset: int
    entry: Entry
    def __init__(self, name: _Optional[bytes] = ..., ino: _Optional[int] = ..., dtype: _Optional[int] = ..., offset: _Optional[int] = ..., entry: _Optional[_Union[Entry, _Mapping]] = ...) -> None: ...

class ReadDirReply(_message.Message):
    __slots__ = ("errno", "entries", "eof", "below")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    BELOW_FIELD_NUMBER: _ClassVar[int]
    errno: int
    entries: _containers.RepeatedCompositeFieldContainer[DirEntry]
    eof: bool
    below: _containers.RepeatedCompositeFieldContainer[SubListing]
    def __init__(self, errno: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[DirEntry, _Mapping]]] = ..., eof: _Optional[bool] = ..., below: _Optional[_Iterable[_Union[SubListing, _Mapping]]] = ...) -> None: ...

class ReadFilesRequest(_message.Message):
    __slots__ = ("handles", "max_file_size", "max_total")
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    MAX_FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOTAL_FIELD_NUMBER: _ClassVar[int]
    handles: _containers.RepeatedScalarFieldContainer[int]
    max_file_size: int
    max_total: int
    def __init__(self, handles: _Optional[_Iterable[int]] = ..., max_file_size: _Optional[int] = ..., max_total: _Optional[int] = ...) -> None: ...

class FileContent(_message.Message):
    __slots__ = ("handle", "errno", "data", "attr")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ATTR_FIELD_NUMBER: _ClassVar[int]
    handle: int
    errno: int
    data: bytes
    attr: Attr
    def __init__(self, handle: _Optional[int] = ..., errno: _Optional[int] = ..., data: _Optional[bytes] = ..., attr: _Optional[_Union[Attr, _Mapping]] = ...) -> None: ...

class ReadFilesReply(_message.Message):
    __slots__ = ("errno", "files")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    errno: int
    files: _containers.RepeatedCompositeFieldContainer[FileContent]
    def __init__(self, errno: _Optional[int] = ..., files: _Optional[_Iterable[_Union[FileContent, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Change(_message.Message):
    __slots__ = ("kind", "path", "dest", "is_dir", "seq", "errno")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        WATCHING: _ClassVar[Change.Kind]
        CREATED: _ClassVar[Change.Kind]
        DELETED: _ClassVar[Change.Kind]
        MODIFIED: _ClassVar[Change.Kind]
        ATTRIB: _ClassVar[Change.Kind]
        MOVED: _ClassVar[Change.Kind]
        OVERFLOW: _ClassVar[Change.Kind]
    WATCHING: Change.Kind
    CREATED: Change.Kind
    DELETED: Change.Kind
    MODIFIED: Change.Kind
    ATTRIB: Change.Kind
    MOVED: Change.Kind
    OVERFLOW: Change.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DEST_FIELD_NUMBER: _ClassVar[int]
    IS_DIR_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    kind: Change.Kind
    path: _containers.RepeatedScalarFieldContainer[bytes]
    dest: _containers.RepeatedScalarFieldContainer[bytes]
    is_dir: bool
    seq: int
    errno: int
    def __init__(self, kind: _Optional[_Union[Change.Kind, str]] = ..., path: _Optional[_Iterable[bytes]] = ..., dest: _Optional[_Iterable[bytes]] = ..., is_dir: _Optional[bool] = ..., seq: _Optional[int] = ..., errno: _Optional[int] = ...) -> None: ...
