"""CSV: UTF-8 without BOM, a header row of column names, RFC 4180 quoting, ``\\n`` record ends.

Cells are quoted exactly when they hold a comma, a quote, ``\\r`` or ``\\n`` (a quote inside is
doubled), and every record ends with ``\\n``: what PostgreSQL's ``COPY ... WITH (FORMAT csv)``
and pandas write, so that the PostgreSQL fast path (``readers/postgres.py``) and this writer
produce the same bytes. (Python's ``csv`` module is not used: before Python 3.12 it leaves a
lone ``\\r`` unquoted when records end with ``\\n``, and the writer here, column by column, is
about twice as fast.) A record of a single empty cell is written ``""``, as the csv module
does, so that it is not an empty line.

A text cell that starts with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading
``'`` while ``REPORT_EXPORT["CSV_FORMULA_GUARD"]`` is true (the default), so spreadsheets show
it instead of running it (OWASP "CSV injection"). Numbers are never changed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from django_report_export.conf import export_settings
from django_report_export.formats.base import ChunkRows, FormatWriter, Row
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

#: Types written through ``str()`` (which is ``repr()`` for floats), ``None`` as an empty cell.
_NATIVE_TYPES = frozenset({NoneType, int, float})
_TEXT_TYPES = frozenset({NoneType, str})
_first_char = itemgetter(0)

#: The end of every record.
RECORD_END = "\n"


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


#: Characters that make a cell quoted (RFC 4180): the delimiter, the quote, CR and LF.
_SPECIAL = (",", '"', "\r", "\n")
_SPECIAL_RE = re.compile('[,"\r\n]')


def _quote_column(cells: list[str]) -> list[str]:
    """Cells quoted where they hold a delimiter, a quote, CR or LF; quotes inside doubled."""
    joined = "".join(cells)  # One scan per character for the whole column, in C.
    if not any(char in joined for char in _SPECIAL):
        return cells
    search = _SPECIAL_RE.search
    return ['"' + cell.replace('"', '""') + '"' if search(cell) else cell for cell in cells]


def _empty_for_none(column: list[Any]) -> list[Any]:
    return ["" if value is None else value for value in column]


def _cells(column: list[Any], guard: bool) -> list[str]:
    """A column of a chunk as the texts of its CSV cells, quoted where needed."""
    types = set(map(type, column))
    has_none = NoneType in types
    if types <= _TEXT_TYPES:
        texts = _empty_for_none(column) if has_none else column
        return _quote_column(_guard_column(texts) if guard else texts)
    if types <= _NATIVE_TYPES:
        # Numbers as str() writes them (repr() for floats): no quotes, nothing to guard.
        if not has_none:
            return list(map(str, column))
        return ["" if value is None else str(value) for value in column]
    tokens = token_column(column, types)
    if tokens is not None:
        # Numbers, booleans, dates, UUIDs: no comma, quote or line break in any of them.
        return _empty_for_none(tokens) if has_none else tokens
    texts = _convert_column(column, types, guard)
    return _quote_column(_empty_for_none(texts) if has_none else texts)


def _records(columns: list[list[str]], count: int) -> bytes:
    """``count`` records from the cells of each column, each record ending with ``\\n``."""
    if not columns:
        return (RECORD_END * count).encode()
    if len(columns) == 1:
        # A record of one empty cell is written "" (as the csv module does), not as an
        # empty line, which CSV readers skip.
        return encode_utf8("".join((cell or '""') + RECORD_END for cell in columns[0]))
    return encode_utf8(RECORD_END.join(map(",".join, zip(*columns, strict=True))) + RECORD_END)


class CSVWriter(FormatWriter):
    name = "csv"
    extension = "csv"
    content_type = "text/csv; charset=utf-8"

    def __init__(self, service: str, columns: Sequence[str]) -> None:
        super().__init__(service, columns)
        self.formula_guard = bool(export_settings.CSV_FORMULA_GUARD)

    def header(self) -> bytes:
        return _records([[cell] for cell in _quote_column(list(self.columns))], 1)

    def encode_rows(self, rows: Sequence[Row], *, first: bool) -> bytes:
        if not rows:
            return b""
        width = len(self.columns)
        check_width(rows, width)
        columns = [list(map(getter, rows)) for getter in column_getters(width)]
        return self._encode(columns, len(rows))

    def encode_chunk(self, chunk: ChunkRows, *, first: bool) -> bytes:
        if self._rows_overridden(CSVWriter) or chunk.width != len(self.columns):
            return self.encode_rows(chunk.rows(), first=first)
        return self._encode(chunk.columns(), len(chunk)) if len(chunk) else b""

    def _encode(self, columns: list[list[Any]], count: int) -> bytes:
        guard = self.formula_guard
        return _records([_cells(column, guard) for column in columns], count)

    def footer(self, *, empty: bool) -> bytes:
        return b""
