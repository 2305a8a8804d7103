"""Packing of READDIR / READDIRPLUS answers within the size the kernel asked for."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from . import abi
from .filesystem import DirEntry
from .replies import pack_entry

_PADDING = bytes(8)
_NO_ENTRY = bytes(abi.ENTRY_OUT.size)


def pack_dirents(
    records: Iterable[DirEntry], size: int, plus: bool
) -> tuple[bytes, list[DirEntry]]:
    """As many records as fit in ``size`` bytes, and the records packed (for lookup counting).

    A record that does not fit is left for the next call: the kernel resumes from the offset of
    the last record it received.
    """
    chunks: list[bytes] = []
    packed: list[DirEntry] = []
    used = 0
    for rec in records:
        name = rec.name
        base = abi.DIRENT.size + len(name)
        if plus:
            base += abi.ENTRY_OUT.size
        total = abi.align8(base)
        if used + total > size:
            break
        if plus:
            chunks.append(pack_entry(rec.entry) if rec.entry is not None else _NO_ENTRY)
        chunks.append(abi.DIRENT.pack(rec.ino, rec.offset, len(name), rec.dtype))
        chunks.append(name)
        if total != base:
            chunks.append(_PADDING[: total - base])
        used += total
        packed.append(rec)
    return b"".join(chunks), packed


def unpack_dirents(data: bytes, plus: bool) -> Iterator[tuple[int, int, int, bytes, bytes | None]]:
    """(ino, offset, type, name, entry_out bytes or None) for each record: for tests and tools."""
    pos = 0
    while pos < len(data):
        entry = None
        if plus:
            entry = data[pos : pos + abi.ENTRY_OUT.size]
            pos += abi.ENTRY_OUT.size
        ino, off, namelen, dtype = abi.DIRENT.unpack_from(data, pos)
        name = data[pos + abi.DIRENT.size : pos + abi.DIRENT.size + namelen]
        start = pos - (abi.ENTRY_OUT.size if plus else 0)
        pos = start + abi.align8((abi.ENTRY_OUT.size if plus else 0) + abi.DIRENT.size + namelen)
        yield ino, off, dtype, bytes(name), entry
