"""JSON: one array of objects, one object per line, keys the column names.

    [
    {"id":1,"total":"12.50","created":"2024-05-01T10:00:00+00:00","note":null},
    {"id":2,"total":"7.00","created":"2024-05-01T10:05:00+00:00","note":"gift"}
    ]

Decimals are strings of their exact digits (as Django REST framework writes them), datetimes
ISO 8601 strings with their offset, ``None`` is ``null``, JSON field values are nested JSON.
An export without rows is ``[\\n]\\n``.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import orjson

from django_report_export.formats.base import ChunkRows, FormatWriter, Row
from django_report_export.formats.documents import Items
from django_report_export.formats.values import (
    JSON_PASSTHROUGH,
    NoneType,
    check_width,
    decimal_format,
    decimal_texts,
    fallback_json_bytes,
    json_default,
    orjson_writes_isoformat,
)

#: Types orjson writes natively exactly as ``json_default`` would write them.
_NATIVE_TYPES = frozenset({NoneType, str, int, bool, float, uuid.UUID, datetime.date})
_DECIMAL_TYPES = _NATIVE_TYPES | {decimal.Decimal}
_DATETIME_TYPES = frozenset({NoneType, datetime.datetime})
#: Raw value types that need no look at their columns (see ``JSONWriter._plan``).
_RAW_TYPES = _NATIVE_TYPES | {bytes}


class JSONWriter(FormatWriter):
    name = "json"
    extension = "json"
    content_type = "application/json"
    #: What stands between two objects: a comma and a line end (``jsonl``: a line end).
    object_separator: ClassVar[bytes] = b",\n"
    #: What a chunk ends with (``jsonl``: the line end of its last object).
    chunk_end: ClassVar[bytes] = b""

    def __init__(self, service: str, columns: Sequence[str]) -> None:
        super().__init__(service, columns)
        # Objects are written with one orjson call per chunk, "[{...},{...}]", and put on
        # lines of their own by replacing the bytes between two objects, ``},{"<first key>":``.
        # Those bytes can also stand inside a value (nested objects, text), so they are
        # replaced only when they occur exactly once per pair of neighbouring objects.
        first_key = orjson.dumps(self.columns[0]) + b":" if self.columns else b""
        self._between = b"},{" + first_key
        if _has_border(self._between):
            self._between = b"},{"  # Cannot overlap itself, so counting it is exact.
        self._between_lines = self._between.replace(b",", self.object_separator, 1)

    def header(self) -> bytes:
        return b"[\n"

    def _plan(
        self, chunk: ChunkRows, *, every_column: bool = False
    ) -> tuple[ChunkRows, int, Callable[[Any], Any]]:
        """The chunk to write, and orjson's option and default for it, from the types in
        its columns.

        In the common case (numbers, text, decimals, datetimes in UTC) orjson writes every
        value itself, the decimals having been replaced by their texts, column by column;
        datetimes are passed through to ``json_default`` when orjson would not write them
        exactly as ``isoformat()``, and so are JSON values, which may nest anything.

        Columns that are not replaced are not looked at when the raw values are all of
        types orjson writes natively, or bytes: a bytes value makes the plan's ``default``
        raise, and ``_encode`` then plans again with ``every_column``.
        """
        texts: dict[int, list[Any]] = {}
        indices: Iterable[int] = range(chunk.width)
        if not every_column and chunk.replaced() and chunk.raw_types() <= _RAW_TYPES:
            indices = chunk.replaced()  # The others need nothing; one pass found that.
        for index in indices:
            types = set(map(type, chunk.values(index)))
            if types <= _NATIVE_TYPES:
                continue
            if types <= _DECIMAL_TYPES:
                texts[index] = decimal_texts(chunk.column(index), types)
                continue
            if types <= _DATETIME_TYPES and orjson_writes_isoformat(chunk.values(index)):
                continue
            return chunk, JSON_PASSTHROUGH, json_default
        return chunk.replace(texts), 0, decimal_format

    def _encode_row(self, row: Row) -> bytes:
        record = dict(zip(self.columns, row, strict=True))
        try:
            return orjson.dumps(record, default=json_default, option=JSON_PASSTHROUGH)
        except TypeError:  # orjson.JSONEncodeError: lone surrogates, integers beyond 64 bits
            return fallback_json_bytes(record)

    def encode_rows(self, rows: Sequence[Row], *, first: bool) -> bytes:
        if not rows:
            return b""
        check_width(rows, len(self.columns))
        return self._encode(ChunkRows(rows, len(self.columns)), first=first)

    def encode_chunk(self, chunk: ChunkRows, *, first: bool) -> bytes:
        if self._rows_overridden(JSONWriter) or chunk.width != len(self.columns):
            return self.encode_rows(chunk.rows(), first=first)
        return self._encode(chunk, first=first) if len(chunk) else b""

    def _encode(self, chunk: ChunkRows, *, first: bool) -> bytes:
        data = self._objects(*self._plan(chunk), len(chunk))
        if data is None and bytes in chunk.raw_types():
            data = self._objects(*self._plan(chunk, every_column=True), len(chunk))
        # A later chunk begins with the separator unless each chunk ends its own last line.
        start = b"" if first or self.chunk_end else self.object_separator
        if data is not None:
            # Without the list's brackets, copied once.
            return b"".join((start, memoryview(data)[1:-1], self.chunk_end))
        body = self.object_separator.join(map(self._encode_row, chunk.rows()))
        return b"".join((start, body, self.chunk_end))

    def _objects(
        self, chunk: ChunkRows, option: int, default: Callable[[Any], Any], count: int
    ) -> bytes | None:
        """The chunk's objects as a JSON array, one object per line, or ``None`` when
        orjson refuses a value or the lines cannot be told apart."""
        try:
            data = orjson.dumps(chunk.records(self.columns), default=default, option=option)
        except TypeError:
            return None
        growth = len(self._between_lines) - len(self._between)
        if not growth and data.count(self._between) != count - 1:
            return None
        lines = data.replace(self._between, self._between_lines)
        # Each replacement adds ``growth`` bytes (a line end): one scan counts and replaces.
        return lines if not growth or len(lines) - len(data) == growth * (count - 1) else None

    def encode_items(self, items: Items, *, first: bool) -> bytes:
        """A collection's next items, as in its array (``formats/documents.py``)."""
        try:
            data = orjson.dumps(items, default=json_default, option=JSON_PASSTHROUGH)
        except TypeError:
            data = fallback_json_bytes(items)
        return b"".join((b"" if first else b",", memoryview(data)[1:-1]))

    def footer(self, *, empty: bool) -> bytes:
        return b"]\n" if empty else b"\n]\n"


def _has_border(pattern: bytes) -> bool:
    """Whether a proper prefix of ``pattern`` is also its suffix (then occurrences overlap)."""
    return any(pattern[:size] == pattern[-size:] for size in range(1, len(pattern)))
