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
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from django_report_export.formats.base import FormatWriter, Row
from django_report_export.formats.values import (
    JSON_PASSTHROUGH,
    NoneType,
    check_width,
    column_getters,
    decimal_format,
    fallback_json_bytes,
    json_default,
    orjson_writes_isoformat,
)

#: Types orjson writes natively exactly as ``json_default`` would write them.
_NATIVE_TYPES = frozenset({NoneType, str, int, bool, float, uuid.UUID, datetime.date})
_DECIMAL_TYPES = _NATIVE_TYPES | {decimal.Decimal}
_DATETIME_TYPES = frozenset({NoneType, datetime.datetime})


class JSONWriter(FormatWriter):
    name = "json"
    extension = "json"
    content_type = "application/json"

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
        self._between_lines = self._between.replace(b"},{", b"},\n{", 1)

    def header(self) -> bytes:
        return b"[\n"

    def _plan(self, rows: Sequence[Row]) -> tuple[int, Callable[[Any], Any]]:
        """orjson's option and default for a chunk, from the types in its columns.

        In the common case (numbers, text, decimals, datetimes in UTC) orjson writes all but
        the decimals itself and ``default`` is the C-level ``format(d, "f")``; datetimes are
        passed through to ``json_default`` when orjson would not write them exactly as
        ``isoformat()``, and so are JSON values, which may nest anything.
        """
        for getter in column_getters(len(self.columns)):
            types = set(map(type, map(getter, rows)))
            if types <= _NATIVE_TYPES:
                continue
            if types <= _DECIMAL_TYPES:
                continue
            if types <= _DATETIME_TYPES and orjson_writes_isoformat(map(getter, rows)):
                continue
            return JSON_PASSTHROUGH, json_default
        return 0, decimal_format

    def _encode_row(self, row: Row) -> bytes:
        record = dict(zip(self.columns, row, strict=True))
        try:
            return orjson.dumps(record, default=json_default, option=JSON_PASSTHROUGH)
        except TypeError:  # orjson.JSONEncodeError: lone surrogates, integers beyond 64 bits
            return fallback_json_bytes(record)

    def encode_rows(self, rows: Sequence[Row], *, first: bool) -> bytes:
        if not rows:
            return b""
        columns = self.columns
        check_width(rows, len(columns))
        body: bytes | None = None
        option, default = self._plan(rows)
        try:
            # Widths were checked above.
            records = [dict(zip(columns, row, strict=False)) for row in rows]
            data = orjson.dumps(records, default=default, option=option)
        except TypeError:
            pass
        else:
            if data.count(self._between) == len(rows) - 1:
                body = data[1:-1].replace(self._between, self._between_lines)
        if body is None:
            body = b",\n".join(map(self._encode_row, rows))
        return body if first else b",\n" + body

    def footer(self, *, empty: bool) -> bytes:
        return b"]\n" if empty else b"\n]\n"


def _has_border(pattern: bytes) -> bool:
    """Whether a proper prefix of ``pattern`` is also its suffix (then occurrences overlap)."""
    return any(pattern[:size] == pattern[-size:] for size in range(1, len(pattern)))
