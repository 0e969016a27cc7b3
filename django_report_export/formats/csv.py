"""CSV: UTF-8 without BOM, a header row of column names, RFC 4180 quoting, ``\\r\\n`` lines.

A text cell that starts with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading
``'`` while ``REPORT_EXPORT["CSV_FORMULA_GUARD"]`` is true (the default), so spreadsheets show
it instead of running it (OWASP "CSV injection"). Numbers are never changed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

from django_report_export.conf import export_settings
from django_report_export.formats.base import FormatWriter, Row
from django_report_export.formats.values import (
    NoneType,
    check_width,
    column_getters,
    encode_utf8,
    text_column,
    token_column,
)

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_PREFIXES = frozenset("=+-@\t\r")

#: Types the csv module writes as they should be: ``None`` as an empty cell, numbers through
#: ``str()`` (which is ``repr()`` for floats).
_NATIVE_TYPES = frozenset({NoneType, int, float})
_TEXT_TYPES = frozenset({NoneType, str})
_first_char = itemgetter(0)


def guard_formula(value: str) -> str:
    """``value`` with a leading ``'`` when a spreadsheet would take it for a formula."""
    if value and value[0] in FORMULA_PREFIXES:
        return "'" + value
    return value


def _guard_column(column: list[Any]) -> list[Any]:
    """A column of ``str``/``None`` values with formula-like texts guarded."""
    # filter(None, ...) drops None and "": every remaining text has a first character.
    if FORMULA_PREFIXES.isdisjoint(map(_first_char, filter(None, column))):
        return column
    return ["'" + value if value and value[0] in FORMULA_PREFIXES else value for value in column]


def _convert_column(column: list[Any], types: set[type], guard: bool) -> list[Any]:
    if types <= _TEXT_TYPES:
        return _guard_column(column) if guard else column
    texts = token_column(column, types)
    if texts is not None:
        return texts
    texts = text_column(column, types)
    if guard and any(issubclass(cls, str) for cls in types):
        texts = [
            guard_formula(text) if isinstance(value, str) else text
            for value, text in zip(column, texts, strict=True)
        ]
    return texts


class CSVWriter(FormatWriter):
    name = "csv"
    extension = "csv"
    content_type = "text/csv; charset=utf-8"

    def __init__(self, service: str, columns: Sequence[str]) -> None:
        super().__init__(service, columns)
        self.formula_guard = bool(export_settings.CSV_FORMULA_GUARD)

    def _encode(self, rows: Iterable[Sequence[Any]]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerows(rows)
        return encode_utf8(buffer.getvalue())

    def header(self) -> bytes:
        return self._encode([self.columns])

    def encode_rows(self, rows: Sequence[Row], *, first: bool) -> bytes:
        if not rows:
            return b""
        width = len(self.columns)
        check_width(rows, width)
        if not width:
            return self._encode([()] * len(rows))
        guard = self.formula_guard
        columns: list[list[Any]] | None = None
        for index, getter in enumerate(column_getters(width)):
            types = set(map(type, map(getter, rows)))
            if types <= _NATIVE_TYPES or (not guard and types <= _TEXT_TYPES):
                continue
            if columns is None:
                columns = [list(map(get, rows)) for get in column_getters(width)]
            columns[index] = _convert_column(columns[index], types, guard)
        if columns is None:
            # Nothing to convert: the csv module writes the rows as they are.
            return self._encode(rows)
        return self._encode(zip(*columns, strict=True))

    def footer(self, *, empty: bool) -> bytes:
        return b""
