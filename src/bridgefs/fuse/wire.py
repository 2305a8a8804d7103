"""How a request's fields lie in the kernel's bytes, read from the annotations of its dataclass.

A request class mirrors its ``struct fuse_*_in`` (linux/fuse.h) field by field: ``U32``/``U64``
fields first (the fixed part), then one ``Name`` per NUL-terminated name, then at most one byte tail
(``Rest``: what is left; ``Annotated[bytes, SizedBy("f")]``: exactly as many bytes as field f says).

The fixed part is laid out as the C compiler lays the struct out: each integer at a multiple of its
size, the whole rounded up to 8 bytes (every ``fuse_*_in`` is).  So padding that alignment implies
is never declared, and no index says which unpacked value lands in which field; an unused field
that alignment does not explain (SETATTR's ``unused4``, FLUSH's ``unused``) is declared like any
other.
"""

from __future__ import annotations

import abc
import dataclasses
import errno
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

if TYPE_CHECKING:
    from .requests import Header, Request


@dataclass(frozen=True, slots=True)
class Int:
    """An unsigned little-endian integer: ``code`` is its struct format character."""

    code: str

    @property
    def size(self) -> int:
        return struct.calcsize("<" + self.code)


@dataclass(frozen=True, slots=True)
class SizedBy:
    """A byte tail exactly as long as the integer field ``field`` says."""

    field: str


class _Mark:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NAME = _Mark("NAME")
REST = _Mark("REST")

U32 = Annotated[int, Int("I")]
U64 = Annotated[int, Int("Q")]
Name = Annotated[bytes, NAME]  # one path component (or xattr name, or symlink target)
Rest = Annotated[bytes, REST]


class BadFrame(Exception):
    """The body does not fit the layout: answer ``errno``."""

    def __init__(self, err: int, reason: str) -> None:
        super().__init__(reason)
        self.errno = err
        self.reason = reason


class Layout(abc.ABC):
    """Reads a request body into its dataclass, and (for tests and tools) writes it back."""

    names: int = 0  # NUL-terminated names after the fixed part
    fixed_size: int = 0  # bytes the body needs at least

    @abc.abstractmethod
    def unpack(self, header: Header, body: memoryview) -> Request: ...

    @abc.abstractmethod
    def pack(self, req: Request) -> bytes: ...


def split_names(body: memoryview, count: int) -> tuple[list[bytes], memoryview]:
    names = []
    rest = body
    for _ in range(count):
        raw = bytes(rest)
        end = raw.find(b"\0")
        if end < 0:
            raise BadFrame(errno.EINVAL, "name without NUL terminator")
        names.append(raw[:end])
        rest = rest[end + 1 :]
    return names, rest


class StructLayout(Layout):
    """The layout its annotations give a request class (see the module docstring)."""

    def __init__(self, cls: type[Request]) -> None:
        self.cls = cls
        hints = get_type_hints(cls, include_extras=True)
        fmt, offset = "<", 0
        ints: list[str] = []
        self.fields: list[str] = []
        self.tail: _Mark | SizedBy | None = None
        self.tail_field: str | None = None
        for f in dataclasses.fields(cls):
            if f.name == "header":
                continue
            self.fields.append(f.name)
            mark = _mark_of(cls, f.name, hints[f.name])
            where = f"{cls.__name__}.{f.name}"
            if isinstance(mark, Int):
                if self.names or self.tail is not None:
                    raise TypeError(f"{where}: integer fields come before names and tails")
                pad = -offset % mark.size
                fmt += (f"{pad}x" if pad else "") + mark.code
                offset += pad + mark.size
                ints.append(f.name)
            elif mark is NAME:
                if self.tail is not None:
                    raise TypeError(f"{where}: names come before the tail")
                self.names += 1
            elif self.tail is None:
                self.tail, self.tail_field = mark, f.name
            else:
                raise TypeError(f"{where}: a request has at most one byte tail")
        pad = -offset % 8
        self.fixed = struct.Struct(fmt + (f"{pad}x" if pad else "")) if offset else None
        self.fixed_size = self.fixed.size if self.fixed else 0
        # Where the announced size sits among the unpacked integers.
        self.sized_at = ints.index(self.tail.field) if isinstance(self.tail, SizedBy) else -1
        self.ints = len(ints)

    def unpack(self, header: Header, body: memoryview) -> Request:
        values: list[Any] = [header]
        fixed = self.fixed
        if fixed is not None:
            if len(body) < fixed.size:
                raise BadFrame(errno.EINVAL, f"{len(body)}-byte body, {fixed.size} expected")
            values.extend(fixed.unpack_from(body))
            body = body[fixed.size :]
        if self.names:
            names, body = split_names(body, self.names)
            values.extend(names)
        if self.tail is REST:
            values.append(bytes(body))
        elif self.sized_at >= 0:
            size = values[1 + self.sized_at]
            if size > len(body):
                raise BadFrame(errno.EINVAL, f"payload of {len(body)} bytes, {size} announced")
            values.append(bytes(body[:size]))
        return self.cls(*values)

    def pack(self, req: Request) -> bytes:
        values = [getattr(req, name) for name in self.fields]
        body = self.fixed.pack(*values[: self.ints]) if self.fixed else b""
        for name in values[self.ints : self.ints + self.names]:
            body += name + b"\0"
        if self.tail is not None:
            body += values[-1]
        return body


def _mark_of(cls: type, name: str, hint: Any) -> Int | _Mark | SizedBy:
    for meta in getattr(hint, "__metadata__", ()):
        if isinstance(meta, (Int, _Mark, SizedBy)):
            return meta
    raise TypeError(f"{cls.__name__}.{name}: annotate it U32, U64, Name, Rest or SizedBy")
