"""Value conversions shared by the format writers, kept in one place.

Every writer renders a value the same way, so a ``Decimal`` reads ``1234567.89`` in CSV, JSON
and XML alike (see ``docs/formats.md``):

=================  ==========================================================================
Python value       text (CSV cell, XML element text; JSON uses native types where noted)
=================  ==========================================================================
``None``           empty CSV cell, JSON ``null``, XML element omitted
``str``            itself (CSV: formula guard; XML: escaped, forbidden characters -> U+FFFD)
``bool``           ``true`` / ``false`` (JSON ``true`` / ``false``)
``int``            decimal digits (JSON number)
``float``          ``repr()``: shortest round-trip text, ``nan``, ``inf`` (JSON number;
                   ``null`` for NaN and infinities, which JSON cannot hold)
``Decimal``        exact fixed point, ``format(d, "f")``, never exponent notation (JSON string)
``datetime``       ``isoformat()``; aware values keep their offset (JSON string)
``date``/``time``  ``isoformat()`` (JSON string)
``timedelta``      ISO 8601 duration as Django writes it, ``P1DT02H03M04.000005S`` (JSON string)
``UUID``           canonical hyphenated lowercase text (JSON string)
``dict``/``list``  compact JSON text (JSON: nested JSON)
``bytes``          base64 text (JSON string)
anything else      ``str(value)`` (JSON string)
=================  ==========================================================================

Writers convert a chunk column by column: the types present in a column pick a converter
once, and the conversion itself runs in C (``map`` over a converter, or a single
``orjson.dumps`` of the whole column, see ``token_text``). The text of every value depends on
that value alone, never on its neighbours or on which converter the chunk used, so the bytes
of an export do not depend on how its rows were split into chunks.
"""

from __future__ import annotations

import base64
import codecs
import datetime
import decimal
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter, itemgetter
from typing import Any

import orjson
from django.utils.duration import duration_iso_string

from django_report_export.formats.documents import GAP, Gap

NoneType = type(None)

#: Text of booleans in CSV and XML.
BOOL_TEXT = {True: "true", False: "false"}

#: Name of the codec error handler that writes U+FFFD for what UTF-8 cannot encode: lone
#: surrogates, which a ``str`` may hold but no UTF-8 file may.
REPLACE_ERRORS = "django_report_export.replace"


def _replace_with_fffd(error: UnicodeError) -> tuple[bytes, int]:
    # Bytes: the UTF-8 encoder takes a non-ASCII replacement only already encoded.
    if isinstance(error, UnicodeEncodeError):
        return "\ufffd".encode() * (error.end - error.start), error.end
    raise error


try:
    codecs.lookup_error(REPLACE_ERRORS)
except LookupError:
    codecs.register_error(REPLACE_ERRORS, _replace_with_fffd)


def encode_utf8(text: str) -> bytes:
    """UTF-8 bytes of ``text``; lone surrogates become U+FFFD instead of raising."""
    return text.encode("utf-8", REPLACE_ERRORS)


def decimal_text(value: decimal.Decimal) -> str:
    """Exact fixed-point digits: ``Decimal("1E+3")`` -> ``1000``, ``Decimal("0E-8")`` ->
    ``0.00000000``."""
    text = str(value)  # Faster, and the same unless in exponent notation.
    if "E" in text or "e" in text:
        return format(value, "f")
    return text


def duration_text(value: datetime.timedelta) -> str:
    """ISO 8601 duration as Django writes it (``P1DT02H03M04.000005S``, ``-P0DT23H59M55S``),
    read back by ``django.utils.dateparse.parse_duration``."""
    return duration_iso_string(value)


def bytes_text(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(value).decode("ascii")


def _str_text(value: str) -> str:
    return value


def _json_text(value: Any) -> str:
    return json_text(value)


#: Converter to text of each type, matched exactly (subclasses go through their MRO).
TEXT_CONVERTERS: dict[type, Callable[[Any], str]] = {
    str: _str_text,
    bool: BOOL_TEXT.__getitem__,
    int: int.__repr__,
    float: float.__repr__,
    decimal.Decimal: decimal_text,
    datetime.datetime: datetime.datetime.isoformat,
    datetime.date: datetime.date.isoformat,
    datetime.time: datetime.time.isoformat,
    datetime.timedelta: duration_text,
    uuid.UUID: str,
    dict: _json_text,
    list: _json_text,
    tuple: _json_text,
    bytes: bytes_text,
    bytearray: bytes_text,
    memoryview: bytes_text,
}

#: Types whose text holds no character XML must escape or replace, no quote, no comma.
PLAIN_TYPES = frozenset(
    {
        bool,
        int,
        float,
        decimal.Decimal,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
        bytes,
        bytearray,
        memoryview,
    }
)


def _bool_subclass_text(value: Any) -> str:
    return BOOL_TEXT[bool(value)]


def text_converter(cls: type) -> Callable[[Any], str]:
    """Converter to text for values of type ``cls`` (matched exactly, then through the MRO:
    an ``IntEnum`` member is written as its number, a ``str`` subclass as its text)."""
    converter = TEXT_CONVERTERS.get(cls)
    if converter is not None:
        return converter
    for base in cls.__mro__[1:]:
        if base is bool:
            return _bool_subclass_text
        if base is str:
            return str.__str__
        converter = TEXT_CONVERTERS.get(base)
        if converter is not None:
            return converter
    return str


def text_value(value: Any) -> str:
    """Text of one value that is not ``None`` (the writers each write nulls their own way)."""
    return text_converter(type(value))(value)


def text_column(column: Sequence[Any], types: Iterable[type] | None = None) -> list[Any]:
    """Texts of one column of a chunk, ``None`` kept as ``None``.

    ``types`` is the set of ``type()`` of the column's values, when the caller has it.
    """
    types = set(map(type, column)) if types is None else set(types)
    has_none = NoneType in types
    types.discard(NoneType)
    if not types:
        return list(column)
    if len(types) == 1:
        converter = text_converter(types.pop())
        if not has_none:
            return list(map(converter, column))
        return [None if value is None else converter(value) for value in column]
    converters = {cls: text_converter(cls) for cls in types}
    return [None if value is None else converters[type(value)](value) for value in column]


# --- Whole-column conversion through orjson --------------------------------------------------

#: Types that ``token_text`` writes with one ``orjson.dumps`` of the whole column. The text
#: of each holds no comma and no quote, and none is ``null``.
TOKEN_TYPES = frozenset(
    {NoneType, int, bool, decimal.Decimal, datetime.datetime, datetime.date, uuid.UUID}
)
_DATETIME_TYPES = frozenset({datetime.datetime, NoneType})
_ONE_MINUTE = datetime.timedelta(minutes=1)
_tzinfo = attrgetter("tzinfo")


def orjson_writes_isoformat(datetimes: Iterable[datetime.datetime | None]) -> bool:
    """Whether orjson writes each of these datetimes exactly as ``isoformat()`` does.

    It does for naive values and fixed offsets in whole minutes (``datetime.timezone``, which
    is what Django returns from the database); it drops the seconds of offsets such as
    ``+00:53:28`` (Berlin's local mean time before 1893), and it reads zoneinfo offsets
    its own way, so any other ``tzinfo`` is taken as no.
    """
    for tz in set(map(_tzinfo, filter(None, datetimes))):
        if tz is None:
            continue
        if type(tz) is not datetime.timezone or tz.utcoffset(None) % _ONE_MINUTE:
            return False
    return True


def token_text(column: Sequence[Any], types: set[type]) -> str | None:
    """The texts of a whole column joined by ``,``, ``null`` for ``None``, or ``None`` when the
    column does not go this way.

    One ``orjson.dumps`` call writes the column: integers and booleans natively (booleans as
    ``true``/``false``), decimals through ``format(d, "f")``, datetimes, dates and UUIDs
    natively when that is exactly ``isoformat()``/``str()``. About five times faster than
    calling ``isoformat()`` per value.
    """
    if not types <= TOKEN_TYPES:
        return None
    if datetime.datetime in types and (
        not types <= _DATETIME_TYPES or not orjson_writes_isoformat(column)
    ):
        return None
    try:
        if decimal.Decimal not in types:
            data = orjson.dumps(column)
        else:
            # str() is three times faster than format(d, "f") and the same text unless it
            # uses exponent notation ("0E-8"), which the check finds; "e" in true/false too.
            data = orjson.dumps(column, default=str)
            if b"E" in data or b"e" in data:
                data = orjson.dumps(column, default=decimal_format)
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits.
        return None
    return data[1:-1].decode().replace('"', "")


#: ``format(d, "f")`` as a C callable, for orjson's ``default`` on columns of decimals.
decimal_format: Callable[[Any], str] = "{:f}".format


def decimal_texts(column: Sequence[Any], types: set[type]) -> list[Any]:
    """``column`` with each ``Decimal`` replaced by its ``decimal_text``, other values kept.

    ``types`` is the set of ``type()`` of the column's values.
    """
    if not types <= {decimal.Decimal, NoneType}:
        return [
            decimal_text(value) if type(value) is decimal.Decimal else value for value in column
        ]
    present = [value for value in column if value is not None] if NoneType in types else column
    texts = list(map(str, present))
    if "E" in "".join(texts):  # str() used exponent notation somewhere (``0E-8``, ``1E+3``).
        texts = list(map(decimal_format, present))
    if present is column:
        return texts
    replacements = iter(texts)
    return [None if value is None else next(replacements) for value in column]


_NULL_TOKEN_TO_NONE = {"null": None}


def token_column(column: Sequence[Any], types: set[type]) -> list[Any] | None:
    """``text_column`` through ``token_text``, or ``None`` when the column does not go
    this way."""
    text = token_text(column, types)
    if text is None:
        return None
    parts = text.split(",")
    if NoneType in types:
        return list(map(_NULL_TOKEN_TO_NONE.get, parts, parts))
    return parts


# --- JSON ----------------------------------------------------------------------------------


def json_default(value: Any) -> Any:
    """``default=`` of ``orjson.dumps``: text of what orjson does not write itself (decimals,
    durations, bytes, and datetimes when the writer passes them through)."""
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, Gap):
        return _GAP_FRAGMENT
    converter = TEXT_CONVERTERS.get(type(value))
    if converter is not None:
        return converter(value)
    return text_value(value)


#: A ``Gap`` in JSON: an array of the mark, where the reader writes the collection's items.
_GAP_FRAGMENT = orjson.Fragment(b"[" + GAP + b"]")

#: orjson options that send datetimes through ``json_default`` (so exactly ``isoformat()``).
JSON_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME


def json_text(value: Any) -> str:
    """Compact JSON text of a ``dict``/``list`` value (in CSV cells and XML elements)."""
    try:
        return orjson.dumps(value, default=json_default, option=JSON_PASSTHROUGH).decode()
    except TypeError:
        return fallback_json_bytes(value).decode("utf-8")


def fallback_json_bytes(value: Any) -> bytes:
    """JSON of what orjson refuses as it is: lone surrogates (written as U+FFFD), integers
    beyond 64 bits, keys that are not strings, aware ``time`` values."""
    cleaned = json_clean(value)
    try:
        return orjson.dumps(cleaned)
    except TypeError:
        import json

        return json.dumps(cleaned, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_clean(value: Any) -> Any:
    """``value`` as plain JSON types, converted the way the orjson path converts them."""
    if isinstance(value, str):
        return encode_utf8(value).decode("utf-8")
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {
            json_clean(key) if isinstance(key, str) else text_value(key): json_clean(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [json_clean(item) for item in value]
    return json_clean(json_default(value))


# --- Chunks --------------------------------------------------------------------------------

_GETTERS: list[Callable[[Any], Any]] = []


def column_getters(width: int) -> list[Callable[[Any], Any]]:
    """``itemgetter(i)`` for each column (cached): ``map(getter, rows)`` takes a column out of
    a chunk in C, faster than ``zip(*rows)`` on thousands of rows."""
    while len(_GETTERS) < width:
        _GETTERS.append(itemgetter(len(_GETTERS)))
    return _GETTERS[:width]


def check_width(rows: Sequence[Sequence[Any]], width: int) -> None:
    """Raise ``ValueError`` unless every row has ``width`` values (one per column)."""
    lengths = set(map(len, rows))
    if lengths != {width}:
        bad = sorted(lengths - {width})
        raise ValueError(f"Every row must have {width} values, one per column; got {bad}.")


def columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """The columns of a chunk of rows."""
    check_width(rows, width)
    return [list(map(getter, rows)) for getter in column_getters(width)]
