"""CSV: UTF-8, a header row of column names, RFC 4180 quoting, ``\\n`` record ends.

Those are the defaults; an export's options (``options.FileOptions``) choose the delimiter
(``,`` ``;`` tab ``|``), a byte-order mark, ``\\r\\n`` record ends, a ``,`` decimal separator
in decimals and floats, and a header row of labels or none.

Cells are quoted exactly when they hold a comma, a quote, ``\\r``, ``\\n``, a semicolon, a
tab or a bar (a quote inside is doubled), and every record ends with ``\\n``, as PostgreSQL's
``COPY ... WITH (FORMAT csv)`` and pandas end them; the PostgreSQL fast path
(``readers/postgres.py``) writes the same bytes as this writer. (Python's ``csv`` module is not
used: before Python 3.12 it leaves a lone ``\\r`` unquoted when records end with ``\\n``, and
the writer here, column by column, is about twice as fast.) A record of a single empty cell is
written ``""``, as the csv module does, so that it is not an empty line.

While ``REPORT_EXPORT["CSV_FORMULA_GUARD"]`` is true (the default), a text gets a ``'`` wherever
a spreadsheet could start reading a formula in it (OWASP "CSV injection"): at its start and
after each comma, semicolon, tab, bar or line end in it (a spreadsheet may split the file at
any of them), where ``=``, ``+``, ``-``, ``@`` or a full-width form of them follows, after any
whitespace; and at the start of a text that starts with a tab or CR. Numbers are never
changed. The rule does not depend on the file's delimiter; docs/formats.md tells why.
"""

from __future__ import annotations

import decimal
import re
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate, count
from operator import add
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
from django_report_export.options import UTF8_BOM

#: Characters that start a formula: = + - @ (OWASP) and their full-width forms U+FF1D, U+FF0B,
#: U+FF0D, U+FF20, which East Asian spreadsheets take for them. ``-`` comes last, so that the
#: text is also the inside of a regex bracket.
FORMULA_SIGNS = "=+@\uff1d\uff0b\uff0d\uff20-"
#: Characters that OWASP also guards at the start of a text, whatever follows: tab and CR.
FORMULA_STARTS = "\t\r"
#: Whitespace a spreadsheet may trim before reading a cell: every character ``str.isspace()``
#: holds for (spaces of every width, tabs, line ends).
LEADING_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)
#: Where a spreadsheet may begin a new cell or record inside a text, whatever the delimiter of
#: the file: the delimiters a spreadsheet may assume (comma, semicolon, tab, bar), line ends.
CELL_BREAKS = ",;\t|\r\n"

#: A formula sign after anything a spreadsheet may drop before it reads a cell: whitespace, and
#: quotes (that open a quoted cell, where a cell starts inside a text).
_FORMULA = f'[{LEADING_WHITESPACE}"]*[{FORMULA_SIGNS}]'
#: Regular expressions of the guard, written so that Python and PostgreSQL read them alike
#: (``readers/postgres.py`` uses the same texts): a text starting like a formula; a cell break
#: followed by one (the break is kept, a ``'`` goes after it); either of them.
FORMULA_AT_START = f"^([{FORMULA_STARTS}]|{_FORMULA})"
FORMULA_AFTER_BREAK = f"([{CELL_BREAKS}])(?={_FORMULA})"
FORMULA_ANYWHERE = f"^[{FORMULA_STARTS}]|(^|[{CELL_BREAKS}]){_FORMULA}"

_starts_like_formula = re.compile(FORMULA_AT_START).match
_guard_after_breaks = re.compile(FORMULA_AFTER_BREAK).sub
_needs_guard = re.compile(FORMULA_ANYWHERE).search
_has_cell_break = re.compile(f"[{CELL_BREAKS}]").search
#: The scan of a whole column for ``_guard_column``: a cell break, then whitespace or quotes that
#: are no cell break, then a sign. Any run of whitespace before a sign that holds cell breaks ends
#: with one, so this finds every place ``FORMULA_AFTER_BREAK`` does, and no match reaches past
#: the line end before the next text.
_INNER_SKIPPED = "".join(char for char in LEADING_WHITESPACE if char not in CELL_BREAKS) + '"'
_formulas_after_breaks = re.compile(f"[{CELL_BREAKS}][{_INNER_SKIPPED}]*[{FORMULA_SIGNS}]").finditer
#: For each break but tab and CR, the mark after it where a formula follows (literal
#: replacements, which ``re`` makes in C).
_MARKS_AFTER = {
    ch: (re.compile(f"{re.escape(ch)}(?=[{_INNER_SKIPPED}]*[{FORMULA_SIGNS}])").sub, ch + "'")
    for ch in CELL_BREAKS
    if ch not in FORMULA_STARTS
}

#: Types written through ``str()`` (which is ``repr()`` for floats), ``None`` as an empty cell.
_NATIVE_TYPES = frozenset({NoneType, int, float})
_TEXT_TYPES = frozenset({NoneType, str})

#: The end of every record.
RECORD_END = "\n"


def guard_formula(value: str) -> str:
    """``value`` with a ``'`` at its start and after each cell break where a formula follows."""
    if _has_cell_break(value) is None:  # the usual text: only its start may need the mark
        return "'" + value if _starts_like_formula(value) else value
    if _needs_guard(value) is None:
        return value
    guarded = marked_after_breaks(value)
    return "'" + guarded if _starts_like_formula(value) else guarded


def marked_after_breaks(value: str) -> str:
    """``value`` with a ``'`` after each cell break where a formula follows (not at its start)."""
    return _guard_after_breaks("\\1'", value)


def _guard_column(texts: list[str]) -> list[str]:
    """A column of texts with the formula-like ones guarded.

    Most columns hold no formula sign at all, or only inside words (``SKU-1``, ``a@b.com``):
    scans in C over the whole column find the few texts that may need a mark, and only those
    are looked at one by one.
    """
    # Every text after a line end, so that its start is found as a cell break is.
    lines = "\n".join(["", *texts])
    if not any(sign in lines for sign in FORMULA_SIGNS):
        if "\t" not in lines and "\r" not in lines:
            return texts
    elif "\t" not in lines and "\r" not in lines and lines.count("\n") == len(texts):
        # No text holds a line end, a tab or a CR: every text is one line of ``lines``, and
        # marking each break before a formula marks each text as ``guard_formula`` does.
        marked_lines = lines
        for char, (mark, marked) in _MARKS_AFTER.items():
            if char in marked_lines:
                marked_lines = mark(marked, marked_lines)
        return texts if marked_lines == lines else marked_lines.split("\n")[1:]
    suspects: set[int] = set()
    if any(sign in lines for sign in FORMULA_SIGNS):
        breaks = [match.start() for match in _formulas_after_breaks(lines)]
        if breaks:
            # Where each text starts in ``lines``: one past the line end before it.
            starts = list(map(add, accumulate(map(len, texts), initial=1), count()))
            suspects.update(bisect_right(starts, position + 1) - 1 for position in breaks)
    if "\t" in lines or "\r" in lines:
        suspects.update(index for index, text in enumerate(texts) if text.startswith(("\t", "\r")))
    if not suspects:
        return texts
    guarded = list(texts)
    for index in suspects:
        guarded[index] = guard_formula(texts[index])
    return guarded


def _convert_column(column: list[Any], types: set[type], guard: bool) -> list[Any]:
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


#: Characters that make a cell quoted: RFC 4180's delimiter, quote, CR and LF, and the other
#: delimiters a spreadsheet may assume (semicolon, tab, bar).
QUOTED_CHARACTERS = ',"\r\n;\t|'
_quoted_character = re.compile(f"[{QUOTED_CHARACTERS}]").search


def _quote_column(cells: list[str]) -> list[str]:
    """Cells quoted where they hold a special character; quotes inside doubled."""
    joined = "".join(cells)  # One scan per character for the whole column, in C.
    if not any(char in joined for char in QUOTED_CHARACTERS):
        return cells
    quoted = _quoted_character
    return ['"' + cell.replace('"', '""') + '"' if quoted(cell) else cell for cell in cells]


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


def _records(
    columns: list[list[str]], count: int, delimiter: str = ",", end: str = RECORD_END
) -> bytes:
    """``count`` records from the cells of each column, each record ending with ``end``."""
    if not columns:
        return (end * count).encode()
    if len(columns) == 1:
        # A record of one empty cell is written "" (as the csv module does), not as an
        # empty line, which CSV readers skip.
        return encode_utf8("".join((cell or '""') + end for cell in columns[0]))
    return encode_utf8(end.join(map(delimiter.join, zip(*columns, strict=True))) + end)


def _decimal_commas(column: list[Any], cells: list[str], quote: bool) -> list[str]:
    """``cells`` with a ``,`` for the ``.`` of each decimal and float (quoted when ``,`` is
    also the delimiter); their cells are never quoted or guarded before."""
    return [
        _comma_cell(cell, quote) if isinstance(value, float | decimal.Decimal) else cell
        for value, cell in zip(column, cells, strict=True)
    ]


def _comma_cell(cell: str, quote: bool) -> str:
    if "." not in cell:
        return cell
    cell = cell.replace(".", ",")
    return f'"{cell}"' if quote else cell


def _has_fractions(column: list[Any]) -> bool:
    return any(issubclass(cls, float | decimal.Decimal) for cls in set(map(type, column)))


class CSVWriter(FormatWriter):
    name = "csv"
    extension = "csv"
    content_type = "text/csv; charset=utf-8"

    def __init__(self, service: str, columns: Sequence[str]) -> None:
        super().__init__(service, columns)
        self.formula_guard = bool(export_settings.CSV_FORMULA_GUARD)

    def header(self) -> bytes:
        options = self.options
        bom = UTF8_BOM if options.bom else b""
        if options.header == "none":
            return bom
        names = self.columns
        if options.header == "labels" and options.labels is not None:
            names = list(options.labels)  # resolved at start (``options.with_labels``)
        cells = [[cell] for cell in _quote_column(list(names))]
        return bom + _records(cells, 1, options.delimiter, options.record_end)

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
        options = self.options
        cells = [_cells(column, guard) for column in columns]
        if options.decimal_separator == ",":
            quote = options.delimiter == ","
            cells = [
                _decimal_commas(column, texts, quote) if _has_fractions(column) else texts
                for column, texts in zip(columns, cells, strict=True)
            ]
        return _records(cells, count, options.delimiter, options.record_end)

    def footer(self, *, empty: bool) -> bytes:
        return b""
