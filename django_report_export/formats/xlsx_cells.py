"""The sheet XML of rows: each value as a typed cell of an xlsx sheet (numbers, booleans,
Excel date serials, inline strings), and the columns' widths."""

from __future__ import annotations

import datetime
import decimal
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from django_report_export.formats.values import (
    NoneType,
    decimal_text,
    decimal_texts,
    text_value,
)
from django_report_export.formats.xml import NULL, SEPARATOR, escape_text, escaped_join

#: Column widths, in characters, that the first chunk's texts are clamped to.
MIN_WIDTH, MAX_WIDTH = 6, 60
#: Rows turned into XML at a time: what a chunk needs beside its rows stays small.
ROWS_A_PIECE = 500
#: Cell styles (``s=``): indices into the ``cellXfs`` of the workbook's styles.
BOLD, DATE, DATETIME, TIME = 1, 2, 3, 4

#: Excel's day zero (serial 0): the 1900 date system, leap-year bug included, is right from
#: 1900-03-01 on; earlier dates are written as text.
_EPOCH = datetime.datetime(1899, 12, 30)
_FIRST_DATE = datetime.date(1900, 3, 1)
_FIRST_SERIAL = (_FIRST_DATE - _EPOCH.date()).days
_ONE_DAY = datetime.timedelta(days=1)
_SECONDS_A_DAY = 86_400

# --- cells ---------------------------------------------------------------------------------

#: Text that Excel would read as an escaped character (``_x0041_`` is ``A``): its ``_`` is
#: itself escaped, as the standard says, so that the text reads back as written.
_ESCAPE_LIKE = re.compile("_(?=x[0-9A-Fa-f]{4}_)")


#: A text cell around the escaped text. Spaces at either end of a text are kept
#: (``xml:space``); always saying so is cheaper than looking.
_TEXT_OPEN = '<c t="inlineStr"><is><t xml:space="preserve">'
_TEXT_CLOSE = "</t></is></c>"


def _text_cell(text: str) -> str:
    escaped = escape_text(text)
    if "_x" in escaped:
        escaped = _ESCAPE_LIKE.sub("_x005F_", escaped)
    return f"{_TEXT_OPEN}{escaped}{_TEXT_CLOSE}"


def _text_cells(texts: Sequence[str | None]) -> list[str]:
    """``_text_cell`` of each text (``None``: an empty cell), escaped as one string."""
    joined = escaped_join(texts)
    if "_x" in joined:
        joined = _ESCAPE_LIKE.sub("_x005F_", joined)
    between = f"{_TEXT_CLOSE}{SEPARATOR}{_TEXT_OPEN}"
    cells = f"{_TEXT_OPEN}{joined.replace(SEPARATOR, between)}{_TEXT_CLOSE}"
    return cells.replace(f"{_TEXT_OPEN}{NULL}{_TEXT_CLOSE}", "<c/>").split(SEPARATOR)


def header_cell(text: str) -> str:
    return _text_cell(text).replace("<c ", f'<c s="{BOLD}" ', 1)


def _number_cell(value: Any) -> str:
    return f"<c><v>{value}</v></c>"


def _float_cell(value: float) -> str:
    if math.isfinite(value):
        return f"<c><v>{value!r}</v></c>"
    return _text_cell(repr(value))  # Excel has no NaN or infinity.


def _decimal_cell(value: decimal.Decimal) -> str:
    if value.is_finite():
        return f"<c><v>{decimal_text(value)}</v></c>"
    return _text_cell(str(value))


def _bool_cell(value: bool) -> str:
    return '<c t="b"><v>1</v></c>' if value else '<c t="b"><v>0</v></c>'


def _datetime_cell(value: datetime.datetime) -> str:
    # Excel has no time zone: an aware datetime is written as its wall time in its own zone
    # (the export's ``timezone``, UTC unless asked), which for UTC is the same serial as before.
    days = (value.replace(tzinfo=None) - _EPOCH) / _ONE_DAY
    if days < _FIRST_SERIAL:
        return _text_cell(value.isoformat())
    return f'<c s="{DATETIME}"><v>{days!r}</v></c>'


def _date_cell(value: datetime.date) -> str:
    if value < _FIRST_DATE:
        return _text_cell(value.isoformat())
    return f'<c s="{DATE}"><v>{(value - _EPOCH.date()).days}</v></c>'


def _time_cell(value: datetime.time) -> str:
    seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    return f'<c s="{TIME}"><v>{seconds / _SECONDS_A_DAY!r}</v></c>'


def _empty_cell(value: None) -> str:
    return "<c/>"


def _other_cell(value: Any) -> str:
    return _text_cell(text_value(value))


_TEXT_TYPES = frozenset({str, NoneType})
_INT = {int}
_DECIMAL = {decimal.Decimal}
_CELLS: dict[type, Callable[[Any], str]] = {
    NoneType: _empty_cell,
    str: _text_cell,
    int: _number_cell,
    bool: _bool_cell,
    float: _float_cell,
    decimal.Decimal: _decimal_cell,
    datetime.datetime: _datetime_cell,
    datetime.date: _date_cell,
    datetime.time: _time_cell,
}


def _cell_writer(cls: type) -> Callable[[Any], str]:
    """The cell of values of type ``cls``: exact types first, then their bases (an
    ``IntEnum`` member is a number, a ``str`` subclass text); anything else is text."""
    for base in cls.__mro__:
        writer = _CELLS.get(base)
        if writer is not None and base is not object:
            return writer
    return _other_cell


_number = "<c><v>{}</v></c>".format


def _cells(values: Sequence[Any]) -> list[str]:
    """The cells of one column: whole columns of one common type at once, others value by
    value."""
    types = set(map(type, values))
    if types <= _TEXT_TYPES:
        return _text_cells(values)
    if types == _INT:
        return list(map(_number, values))
    if types == _DECIMAL and all(map(decimal.Decimal.is_finite, values)):
        return list(map(_number, decimal_texts(values, types)))
    if len(types) == 1:
        return list(map(_cell_writer(types.pop()), values))
    writers = {cls: _cell_writer(cls) for cls in types}
    return [writers[type(value)](value) for value in values]


def width(values: Sequence[Any], name: str) -> float:
    texts = [value if type(value) is str else text_value(value) for value in values if value]
    return clamped_width(max(map(len, texts), default=0), name)


def clamped_width(longest: int, name: str) -> float:
    """The width of a column whose longest value's text has ``longest`` characters."""
    return float(min(max(max(longest, len(name)) + 2, MIN_WIDTH), MAX_WIDTH))


def rows_xml(columns: Sequence[Sequence[Any]], start: int, stop: int) -> Iterator[str]:
    """The ``<row>`` elements of rows ``start`` to ``stop``, ``ROWS_A_PIECE`` at a time."""
    for begin in range(start, stop, ROWS_A_PIECE):
        end = min(begin + ROWS_A_PIECE, stop)
        if not columns:
            yield "<row/>" * (end - begin)
            continue
        cells = zip(*(_cells(column[begin:end]) for column in columns), strict=True)
        yield "".join(map("<row>{}</row>".format, map("".join, cells)))
