"""The SQL that makes PostgreSQL write an export's records as the built-in writers would.

Each cell is formatted in SQL exactly as the Python writer writes the value Django returns
(CSV quoting and the formula guard, JSON strings, XML text); a record is its cells joined with
``||``. What is cheaper over a chunk's bytes in Python than over every value in SQL is done
there: two rare escapes (``fix_json``, ``fix_xml``) and CSV's quotes (``CSVRecords``, over
records built by ``csv_unquoted_record``). Also here: the column types and key types the fast
path takes. Why it is built so: docs/performance.md, "The PostgreSQL fast path".
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from django_report_export.exceptions import ReportExportError
from django_report_export.formats.csv import (
    FORMULA_AFTER_BREAK,
    FORMULA_ANYWHERE,
    FORMULA_AT_START,
    FORMULA_SIGNS,
    LEADING_WHITESPACE,
    QUOTED_CHARACTERS,
    marked_after_breaks,
)
from django_report_export.formats.xml import XMLWriter
from django_report_export.options import FileOptions

#: The options of a CSV as written before options existed.
PLAIN = FileOptions()

# PostgreSQL type OIDs of the result columns the fast path can format exactly.
INT_OIDS = frozenset({20, 21, 23})  # int8, int2, int4
BOOL_OID = 16
NUMERIC_OID = 1700
TEXT_OIDS = frozenset({25, 1043})  # text, varchar (not char(n): ::text would drop its padding)
DATE_OID = 1082
TIMESTAMPTZ_OID = 1184
UUID_OID = 2950

#: Kind of each supported result column type.
KINDS: dict[int, str] = {
    **dict.fromkeys(INT_OIDS, "int"),
    BOOL_OID: "bool",
    NUMERIC_OID: "decimal",
    **dict.fromkeys(TEXT_OIDS, "text"),
    DATE_OID: "date",
    TIMESTAMPTZ_OID: "datetime",
    UUID_OID: "uuid",
}


@dataclass(frozen=True)
class KeyType:
    """What the SQL needs to know of a primary-key type the fast path takes."""

    #: SQL type of an array of keys (the bounds ``width_bucket`` sorts a row's key into).
    array: str
    #: SQL of the largest key of a group, ``{}`` the key column (uuid has no ``max``: its
    #: text in the C collation sorts as the uuid does).
    largest: str
    #: A piece's row up to its text: 3 fields; the row count (int8), the largest key, the
    #: text's length.
    header: struct.Struct
    #: The key from the bytes of the header's largest key field.
    load: Callable[[Any], Any]
    #: The smallest key above a key (the lower bound of the next piece's bucket).
    successor: Callable[[Any], Any]


INT_KEY = KeyType("int8[]", "max({})::int8", struct.Struct(">hiqiqi"), int, lambda key: key + 1)
UUID_KEY = KeyType(
    "uuid[]",
    'max({}::text COLLATE "C")::uuid',
    struct.Struct(">hiqi16si"),
    lambda raw: uuid.UUID(bytes=bytes(raw)),
    lambda key: uuid.UUID(int=key.int + 1),
)
#: The primary-key types the fast path takes, by type OID; other keys use the ORM reader.
KEY_TYPES: dict[int, KeyType] = {**dict.fromkeys(INT_OIDS, INT_KEY), UUID_OID: UUID_KEY}

#: ``isoformat()`` of a UTC datetime; ``.000000`` (no microseconds) is removed afterwards.
_ISO_DATETIME = '\'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\''
#: Code points of the characters that start a formula, and of the whitespace before one
#: (``ascii()`` gives the code point of a text's first character); a quote before one makes
#: the text quoted, which is looked at with the regular expressions.
_FORMULA_CODES = ", ".join(str(ord(char)) for char in FORMULA_SIGNS)
_WHITESPACE_CODES = ", ".join(str(ord(char)) for char in LEADING_WHITESPACE)
#: ``regexp_replace``'s replacement of a cell break before a formula: the break, then ``'``.
_MARK_BREAK = "'\\1'''"


def literal(text: str) -> str:
    """``text`` as an SQL string literal, ``%`` doubled for the driver's parameter syntax.

    Needs ``standard_conforming_strings`` (on by default since PostgreSQL 9.1; checked)."""
    if "\x00" in text:
        raise ValueError("PostgreSQL text cannot hold NUL characters.")
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


# --- Cells ----------------------------------------------------------------------------------


def iso_datetime(column: str) -> str:
    """SQL for ``value.isoformat()`` of a ``timestamptz`` as Django returns it (in UTC)."""
    return f"replace(to_char({column} AT TIME ZONE 'UTC', {_ISO_DATETIME}), '.000000+', '+')"


def iso_date(column: str) -> str:
    return f"to_char({column}, 'YYYY-MM-DD')"


def plain_text(kind: str, column: str) -> str:
    """SQL for the text of a non-null value of ``kind``, as ``values.text_value`` writes it;
    for every kind but ``text`` it needs no escaping in any format."""
    if kind == "datetime":
        return iso_datetime(column)
    if kind == "date":
        return iso_date(column)
    return f"{column}::text"


def csv_cell(kind: str, column: str, guard: bool, decimal_comma: str = "") -> str:
    """SQL for a cell as ``CSVWriter`` writes it, ``NULL`` for an empty cell.

    A text is quoted when it holds one of ``QUOTED_CHARACTERS`` (its quotes doubled). With the
    formula guard on it gets the writer's ``'`` marks, found with the writer's own regular
    expressions. Every cell break and the quote are quoted characters, so a text that is not
    quoted can need a mark only at its start, which its first character mostly tells without
    a regular expression."""
    if kind == "decimal" and decimal_comma:
        return decimal_with_comma(column, quoted=decimal_comma == "quoted")
    if kind != "text":
        return plain_text(kind, column)
    special = " OR ".join(f"strpos({column}, {literal(char)}) > 0" for char in QUOTED_CHARACTERS)
    if not guard:
        return f"CASE WHEN {special} THEN {csv_quoted(column)} ELSE {column} END"
    at_start = f"{column} ~ {literal(FORMULA_AT_START)}"
    after_breaks = f"regexp_replace({column}, {literal(FORMULA_AFTER_BREAK)}, {_MARK_BREAK}, 'g')"
    guarded = (
        f"CASE WHEN {column} ~ {literal(FORMULA_ANYWHERE)}"
        f" THEN CASE WHEN {at_start} THEN '''' ELSE '' END || {after_breaks}"
        f" ELSE {column} END"
    )
    return (
        f"CASE WHEN {special} THEN {csv_quoted(guarded)}"
        f" WHEN {starts_like_formula(column)} THEN '''' || {column} ELSE {column} END"
    )


def starts_like_formula(column: str) -> str:
    """SQL that is true where the text ``column`` gets the formula guard's ``'`` at its start:
    its first character's code point mostly tells, without a regular expression."""
    at_start = f"{column} ~ {literal(FORMULA_AT_START)}"
    return (
        f"ascii({column}) IN ({_FORMULA_CODES})"
        f" OR (ascii({column}) IN ({_WHITESPACE_CODES}) AND {at_start})"
    )


def csv_quoted(text: str) -> str:
    """SQL for ``text`` in quotes, its quotes doubled."""
    return f"'\"' || replace({text}, '\"', '\"\"') || '\"'"


def decimal_with_comma(column: str, *, quoted: bool) -> str:
    """SQL for a decimal's text with ``,`` for its ``.`` (in quotes with ``quoted``, where
    ``,`` is the delimiter too), as ``CSVWriter`` writes it with a ``,`` decimal separator."""
    text = f"{column}::text"
    with_comma = f"replace({text}, '.', ',')"
    if quoted:
        with_comma = f"'\"' || {with_comma} || '\"'"
    return f"CASE WHEN strpos({text}, '.') > 0 THEN {with_comma} ELSE {text} END"


def csv_record(
    kinds: Sequence[str], columns: Sequence[str], guard: bool, options: FileOptions = PLAIN
) -> str:
    """SQL for a CSV record and its line end (a ``NULL`` cell empty), written with the
    delimiter, record end and decimal separator of ``options``."""
    decimal_comma = ""
    if options.decimal_separator == ",":
        decimal_comma = "quoted" if options.delimiter == "," else "plain"
    cells = [
        csv_cell(kind, column, guard, decimal_comma)
        for kind, column in zip(kinds, columns, strict=True)
    ]
    end = literal(options.record_end)
    if len(cells) == 1:
        # A record of one empty cell is written "", not as an empty line.
        return f"COALESCE(NULLIF({cells[0]}, ''), '\"\"') || {end}"
    # ``||`` rather than ``concat()``, which looks up each argument's output function per row.
    delimiter = f" || {literal(options.delimiter)} || "
    return delimiter.join(f"COALESCE({cell}, '')" for cell in cells) + f" || {end}"


# --- CSV records quoted in Python -------------------------------------------------------------
# Looking for the seven quoted characters in every text costs PostgreSQL seven ``strpos`` calls
# a text, most of a record's time; one scan of a chunk's bytes in Python finds them all.

#: What ends a cell and a record of ``csv_unquoted_record``, which ``CSVRecords`` makes the
#: file's delimiter and record end: the file and group separators, which no editor or
#: spreadsheet writes (unlike the tab, the vertical tab of Excel's line breaks, or the unit
#: separator of ASCII-delimited files).
CELL_END = b"\x1c"
RECORD_END = b"\x1d"
#: Past one quoted cell for this many records of a piece, the database quotes the cells.
SQL_QUOTES_ABOVE = 3


def csv_unquoted_cell(kind: str, column: str, guard: bool) -> str:
    """SQL for a cell as ``csv_cell`` writes it where the text holds no quoted character: with
    the formula guard, the mark at its start only. A text that starts with a letter (code
    points 65 to 129, ``ascii() / 65 = 1``) needs none, which one division tells."""
    if kind != "text" or not guard:
        return plain_text(kind, column)
    return (
        f"CASE WHEN ascii({column}) / 65 = 1 THEN {column}"
        f" WHEN {starts_like_formula(column)} THEN '''' || {column} ELSE {column} END"
    )


def csv_unquoted_record(kinds: Sequence[str], columns: Sequence[str], guard: bool) -> str:
    """SQL for a record of ``csv_unquoted_cell``s, each ended by ``CELL_END`` but the last, which
    ``RECORD_END`` ends (a ``NULL`` cell empty)."""
    cells = [
        f"COALESCE({csv_unquoted_cell(kind, column, guard)}, '')"
        for kind, column in zip(kinds, columns, strict=True)
    ]
    cell_end, record_end = literal(CELL_END.decode()), literal(RECORD_END.decode())
    return f" || {cell_end} || ".join(cells) + f" || {record_end}"


class UnsplitRecords(ReportExportError):
    """A text holds ``CELL_END`` or ``RECORD_END``: the chunk's records cannot be split into
    their cells (they are read again with ``csv_record``)."""


class CSVRecords:
    """What makes a chunk of ``csv_unquoted_record``s the bytes of ``csv_record``: each
    separator the file's delimiter or record end, and each cell that holds a quoted character
    (only texts can) marked after its cell breaks (with the formula guard) and quoted.

    ``record`` is the SQL of ``csv_record`` for the same columns, which the reader falls back
    to when a text holds a separator, or when ``quotes_in_sql`` tells that quoting the cells
    here costs more than in the database: a piece of a chunk (up to ``PIECE_ROWS`` records) had
    more than one quoted cell for every ``SQL_QUOTES_ABOVE`` records."""

    def __init__(self, width: int, guard: bool, options: FileOptions, record: str) -> None:
        self.width = width
        self.guard = guard
        self.record = record
        self.record_end = options.record_end.encode()
        self.quotes_in_sql = False
        self._record_marks = CELL_END * (width - 1) + RECORD_END
        delimiter = options.delimiter.encode()
        if self.record_end == b"\n":
            self._separators = bytes.maketrans(CELL_END + RECORD_END, delimiter + b"\n")
        else:
            self._separators = bytes.maketrans(CELL_END, delimiter)

    def __call__(self, data: bytes, rows: int) -> bytes:
        marks = data.translate(None, _CSV_OTHER_BYTES)
        if marks != self._record_marks * rows:
            if marks.count(CELL_END) != rows * (self.width - 1) or marks.count(RECORD_END) != rows:
                raise UnsplitRecords("A text of the chunk holds a separator of its records.")
            data, quoted = self._quoted(data)
            if quoted * SQL_QUOTES_ABOVE > rows:
                self.quotes_in_sql = True
        data = data.translate(self._separators)
        if self.record_end != b"\n":
            data = data.replace(RECORD_END, self.record_end)
        return data

    def _quoted(self, data: bytes) -> tuple[bytes, int]:
        """``data`` with each cell that holds a quoted character quoted, and how many did."""
        # Every quoted character as a quote, so that one ``find`` (memchr) finds the next.
        probe = data.translate(_QUOTED_AS_QUOTE)
        parts, done, quoted = [], 0, 0
        at = probe.find(b'"')
        while at >= 0:
            start = max(probe.rfind(CELL_END, done, at), probe.rfind(RECORD_END, done, at)) + 1
            record_end = probe.find(RECORD_END, at)
            cell_end = probe.find(CELL_END, at, record_end)
            end = record_end if cell_end < 0 else cell_end
            parts += [data[done:start], self._quote(data[start:end])]
            done, quoted = end, quoted + 1
            at = probe.find(b'"', end)
        parts.append(data[done:])
        return b"".join(parts), quoted

    def _quote(self, cell: bytes) -> bytes:
        if self.guard and _formula_sign(cell):
            cell = marked_after_breaks(cell.decode()).encode()
        return b'"' + cell.replace(b'"', b'""') + b'"'


def json_string(column: str) -> str:
    """SQL for a JSON string as orjson writes it, but for control characters other than line
    feeds, which stay raw until ``fix_json``."""
    escaped = f"replace(replace(replace({column}, '\\', '\\\\'), '\"', '\\\"'), E'\\n', '\\n')"
    return f"'\"' || {escaped} || '\"'"


def json_value(kind: str, column: str) -> str:
    """SQL for the JSON of a value as ``JSONWriter`` writes it (``null`` for ``NULL``)."""
    if kind == "text":
        text = json_string(column)
    elif kind in ("int", "bool"):
        text = f"{column}::text"
    else:  # decimal (a string, as DRF writes it), datetime, date, uuid: strings.
        text = f"'\"' || {plain_text(kind, column)} || '\"'"
    return f"COALESCE({text}, 'null')"


def json_record(names: Sequence[str], kinds: Sequence[str], columns: Sequence[str]) -> str:
    """SQL for a JSON object, its keys ``names``."""
    parts = []
    for index, (name, kind, column) in enumerate(zip(names, kinds, columns, strict=True)):
        key = ("{" if index == 0 else ",") + orjson.dumps(name).decode() + ":"
        parts += [literal(key), json_value(kind, column)]
    parts.append("'}'")
    return " || ".join(parts)


def xml_escape(column: str) -> str:
    """SQL for ``formats.xml.escape_text`` but for ``\\r`` and the characters XML forbids,
    which ``fix_xml`` replaces in the chunk's bytes."""
    return f"replace(replace(replace({column}, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')"


def xml_element(kind: str, column: str, tag: str) -> str:
    """SQL for a column's XML element, ``NULL`` (so left out) when the value is ``NULL``."""
    text = xml_escape(column) if kind == "text" else plain_text(kind, column)
    return f"{literal(f'<{tag}>')} || {text} || {literal(f'</{tag}>')}"


def xml_record(writer: XMLWriter, kinds: Sequence[str], columns: Sequence[str]) -> str:
    """SQL for an XML record and its line end (a ``NULL`` element left out)."""
    elements = [
        f"COALESCE({xml_element(kind, column, tag)}, '')"
        for kind, column, tag in zip(kinds, columns, writer.element_names, strict=True)
    ]
    record_start = literal(f"<{writer.record_name}>")
    record_end = literal(f"</{writer.record_name}>\n")
    return " || ".join([record_start, *elements, record_end])


# --- The escapes done in Python ---------------------------------------------------------------
# Each looks for the bytes it changes in one ``translate`` pass that keeps only those (the
# common case: none), then replaces each one found over the whole chunk.

_ALL_BYTES = bytes(range(256))
#: orjson's escape of each control character but line feed (escaped in SQL: every line feed
#: of a JSON chunk separates two records): ``\\t``, ``\\u0001``...
_JSON_ESCAPES = {code: orjson.dumps(chr(code))[1:-1] for code in range(0x20) if code != 0x0A}
_JSON_OTHER_BYTES = _ALL_BYTES.translate(None, bytes(_JSON_ESCAPES))

#: What ``escape_text`` writes for the characters XML forbids (the control characters but
#: tab, LF and CR; U+FFFE and U+FFFF, whose UTF-8 starts with EF) and for CR.
_REPLACEMENT = "\ufffd".encode()
_XML_FORBIDDEN = bytes([*range(1, 9), 0x0B, 0x0C, *range(0x0E, 0x20)])
_XML_ESCAPES = {**dict.fromkeys(_XML_FORBIDDEN, _REPLACEMENT), 0x0D: b"&#13;"}
_XML_OTHER_BYTES = _ALL_BYTES.translate(None, bytes([*_XML_ESCAPES, 0xEF]))
_XML_NONCHARACTERS = re.compile(b"\xef\xbf[\xbe\xbf]")  # U+FFFE, U+FFFF

#: The bytes a chunk of ``csv_unquoted_record``s is looked at for: its separators and the
#: quoted characters. Where they are the separators alone, no text needs quotes.
_QUOTED_BYTES = QUOTED_CHARACTERS.encode()
_CSV_OTHER_BYTES = _ALL_BYTES.translate(None, CELL_END + RECORD_END + _QUOTED_BYTES)
_QUOTED_AS_QUOTE = bytes.maketrans(_QUOTED_BYTES, b'"' * len(_QUOTED_BYTES))
_formula_sign = re.compile(b"|".join(re.escape(sign.encode()) for sign in FORMULA_SIGNS)).search


def _replace_bytes(data: bytes, found: bytes, escapes: dict[int, bytes]) -> bytes:
    for code in set(found):
        if code in escapes:
            data = data.replace(bytes([code]), escapes[code])
    return data


def fix_json(data: bytes) -> bytes:
    """``data`` with the control characters the SQL left raw escaped as orjson escapes them."""
    found = data.translate(None, _JSON_OTHER_BYTES)
    return _replace_bytes(data, found, _JSON_ESCAPES) if found else data


def fix_xml(data: bytes) -> bytes:
    """``data`` with ``\\r`` as ``&#13;`` and the characters XML forbids as U+FFFD, as
    ``escape_text`` writes them (no tag holds any of them)."""
    found = data.translate(None, _XML_OTHER_BYTES)
    if not found:
        return data
    data = _replace_bytes(data, found, _XML_ESCAPES)
    if 0xEF in found:
        data = _XML_NONCHARACTERS.sub(_REPLACEMENT, data)
    return data
