"""The zip records of a workbook written as a stream: local headers, data descriptors, the
central directory (zip64 past 4 GiB), and raw-deflate pieces that can follow one another.

The records are written by hand, not with ``zipfile``, because an entry's data here grows
across chunks, runs and worker processes: ``zipfile`` needs one open file object for the
whole entry, while a checkpoint can carry the few numbers these functions take.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

#: zlib's fastest level: the sheet XML is repetitive, and level 1 already shrinks it ~10x.
COMPRESSION_LEVEL = 1

#: 1980-01-01 00:00, the earliest time a zip header can hold (DOS date and time fields).
_DOS_TIME, _DOS_DATE = 0, (0 << 9) | (1 << 5) | 1
_DEFLATED = 8
DATA_DESCRIPTOR = 0x08  # general-purpose flag: CRC-32 and sizes follow the data
_ZIP32_LIMIT = 0xFFFFFFFF


@dataclass
class Entry:
    """A zip entry that has been written: where, and what the central directory says of it."""

    name: str
    offset: int
    crc: int
    compressed: int
    size: int
    flags: int = 0


def local_header(name: str, flags: int, crc: int = 0, compressed: int = 0, size: int = 0) -> bytes:
    encoded = name.encode()
    return (
        struct.pack(
            "<4s5H3L2H",
            b"PK\x03\x04",
            20,
            flags,
            _DEFLATED,
            _DOS_TIME,
            _DOS_DATE,
            crc,
            compressed,
            size,
            len(encoded),
            0,
        )
        + encoded
    )


def data_descriptor(crc: int, compressed: int, size: int) -> bytes:
    if compressed > _ZIP32_LIMIT or size > _ZIP32_LIMIT:
        return struct.pack("<4sL2Q", b"PK\x07\x08", crc, compressed, size)
    return struct.pack("<4s3L", b"PK\x07\x08", crc, compressed, size)


def central_record(entry: Entry) -> bytes:
    encoded = entry.name.encode()
    big = [value for value in (entry.size, entry.compressed, entry.offset) if value >= _ZIP32_LIMIT]
    extra = struct.pack(f"<2H{len(big)}Q", 1, 8 * len(big), *big) if big else b""
    version = 45 if big else 20

    def clamp(value: int) -> int:
        return _ZIP32_LIMIT if value >= _ZIP32_LIMIT else value

    return (
        struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            version,
            version,
            entry.flags,
            _DEFLATED,
            _DOS_TIME,
            _DOS_DATE,
            entry.crc,
            clamp(entry.compressed),
            clamp(entry.size),
            len(encoded),
            len(extra),
            0,
            0,
            0,
            0,
            clamp(entry.offset),
        )
        + encoded
        + extra
    )


def end_records(count: int, directory_size: int, directory_offset: int) -> bytes:
    """The end of the central directory, with the zip64 records before it when needed."""
    end = directory_offset + directory_size
    records = b""
    if count >= 0xFFFF or directory_offset >= _ZIP32_LIMIT or directory_size >= _ZIP32_LIMIT:
        records = struct.pack(
            "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, directory_size,
            directory_offset,
        )  # fmt: skip
        records += struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
        count, directory_size, directory_offset = (
            min(count, 0xFFFF),
            min(directory_size, _ZIP32_LIMIT),
            min(directory_offset, _ZIP32_LIMIT),
        )
    return records + struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, directory_size, directory_offset, 0
    )


def new_compressor() -> Any:
    """A fresh raw-deflate compressor: the piece it writes, ended by a sync flush
    (byte-aligned, no reference back), may follow any other piece of a deflate stream."""
    return zlib.compressobj(COMPRESSION_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)


def deflate(data: bytes) -> bytes:
    """``data`` as a whole deflate stream."""
    compressor = new_compressor()
    deflated: bytes = compressor.compress(data) + compressor.flush(zlib.Z_FINISH)
    return deflated
