"""The PostgreSQL fast path for xlsx: the database writes each row's sheet XML, Python only
deflates it into the workbook's zip (``XLSXWriter.encode_sheet_rows``).

Each cell is written in SQL exactly as ``formats/xlsx_cells.py`` writes the value Django
returns: numbers and decimals as ``<v>`` numbers, booleans as ``t="b"``, dates and datetimes
as Excel serial numbers with their style, text as an inline string (``<c/>`` for ``NULL``).
A datetime's serial is the quotient of its microseconds since Excel's day zero by those of a
day, rounded once to a double as Python's ``timedelta / timedelta`` does, and written as
``repr()`` writes it (PostgreSQL's shortest round-trip output, ``.0`` added to whole numbers).
The escapes ``fix_xml`` does for XML are done on the chunk's bytes here too, and so is the
``_x005F_`` escape of text that Excel would read as an escaped character.

The column widths of the first chunk come from one more query over its rows: the longest
text of each column's truthy values, as ``xlsx_cells.width`` measures them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django.db import connections

from django_report_export.formats.xlsx import XLSXWriter
from django_report_export.formats.xlsx_cells import DATE, DATETIME, clamped_width
from django_report_export.readers.base import Chunk
from django_report_export.readers.postgres import PostgresChunkReader
from django_report_export.readers.postgres_records import (
    fix_xml,
    iso_date,
    iso_datetime,
    literal,
    plain_text,
    xml_escape,
)

#: The zone whose wall-clock time a datetime's serial number counts (Django returns UTC).
ZONE = "UTC"
#: Microseconds from Unix's day zero (1970-01-01) back to Excel's (1899-12-30), and of a day.
_EXCEL_EPOCH_MICROSECONDS = 2_209_161_600_000_000
_DAY_MICROSECONDS = 86_400_000_000
#: Until here a datetime's microseconds since Excel's day zero stay below 2**53, so a double
#: holds them exactly and one ``float8`` division rounds the quotient as Python does.
_EXACT_DOUBLE_UNTIL = "2185-01-01 00:00:00"
_DAY_ZERO = "1899-12-30"

#: Short marks the SQL writes for the long tags around a text cell's text, which
#: ``fix_sheet_xml`` puts in their place: the database builds, sorts and sends far fewer bytes.
#: No sheet XML holds a ``<`` before a digit (an escaped text holds no ``<`` at all).
_MARKS = {"<2": "</t></is></c>", "<1": '<c t="inlineStr"><is><t xml:space="preserve">'}
_MARKS_BYTES = [(mark.encode(), xml.encode()) for mark, xml in _MARKS.items()]
_ESCAPE_LIKE = re.compile(b"_(?=x[0-9A-Fa-f]{4}_)")


def text_cell(text: str) -> str:
    """SQL for an inline-string cell of an SQL text that needs no more escaping than XML's."""
    return f"'<1' || {text} || '<2'"


def value_cell(style: int | None, text: str) -> str:
    """SQL for a ``<v>`` cell of ``style`` (``None``: none)."""
    start = "<c><v>" if style is None else f'<c s="{style}"><v>'
    return f"'{start}' || {text} || '</v></c>'"


def local_time(column: str) -> str:
    """SQL for the wall-clock ``timestamp`` of a ``timestamptz`` whose serial is written."""
    return f"({column} AT TIME ZONE {literal(ZONE)})"


def excel_serial(local: str) -> str:
    """SQL for ``repr()`` of the Excel serial of a ``timestamp`` on or after 1900-03-01."""
    microseconds = f"((extract(epoch FROM {local}) * 1000000)::int8 + {_EXCEL_EPOCH_MICROSECONDS})"
    exact = f"({microseconds}::float8 / {_DAY_MICROSECONDS})::text"
    # Past 2**53 microseconds: a quotient with 60 decimals, rounded to a double once (which
    # may be a whole number, a microsecond short of midnight).
    wide = (
        f"regexp_replace(((extract(epoch FROM {local}) + 2209161600)::numeric(80, 60) / 86400)"
        "::float8::text, '^([0-9]+)$', '\\1.0')"
    )
    whole_days = f"({local}::date - DATE '1899-12-30')::text || '.0'"
    return (
        f"CASE WHEN {local}::time = TIME '00:00' THEN {whole_days}"
        f" WHEN {local} < TIMESTAMP {literal(_EXACT_DOUBLE_UNTIL)} THEN {exact} ELSE {wide} END"
    )


def cell(kind: str, column: str) -> str:
    """SQL for a column's cell as ``xlsx_cells`` writes it, ``NULL`` for an empty cell."""
    if kind == "text":
        return text_cell(xml_escape(column))
    if kind == "uuid":
        return text_cell(f"{column}::text")
    if kind == "int":
        return value_cell(None, f"{column}::text")
    if kind == "bool":
        return (
            f"CASE {column} WHEN true THEN '<c t=\"b\"><v>1</v></c>'"
            f" WHEN false THEN '<c t=\"b\"><v>0</v></c>' END"
        )
    if kind == "decimal":
        return (
            f"CASE WHEN {column} IN ('NaN', 'Infinity', '-Infinity')"
            f" THEN {text_cell(f'{column}::text')}"
            f" ELSE {value_cell(None, f'{column}::text')} END"
        )
    if kind == "date":
        return (
            f"CASE WHEN {column} >= DATE '1900-03-01'"
            f" THEN {value_cell(DATE, f'({column} - DATE {literal(_DAY_ZERO)})::text')}"
            f" ELSE {text_cell(iso_date(column))} END"
        )
    assert kind == "datetime", kind
    local = local_time(column)
    return (
        f"CASE WHEN {local} >= TIMESTAMP '1900-03-01 00:00:00'"
        f" THEN {value_cell(DATETIME, excel_serial(local))}"
        f" ELSE {text_cell(iso_datetime(column))} END"
    )


def row_xml(kinds: Sequence[str], columns: Sequence[str]) -> str:
    """SQL for a ``<row>`` element of the cells."""
    cells = [
        f"COALESCE({cell(kind, column)}, '<c/>')"
        for kind, column in zip(kinds, columns, strict=True)
    ]
    return " || ".join(["'<row>'", *cells, "'</row>'"])


def fix_sheet_xml(data: bytes) -> bytes:
    """``fix_xml``, ``_`` escaped before what reads as an escaped character, and the marks'
    XML in their place."""
    data = fix_xml(data)
    if b"_x" in data:
        data = _ESCAPE_LIKE.sub(b"_x005F_", data)
    for mark, xml in _MARKS_BYTES:
        data = data.replace(mark, xml)
    return data


def longest_text(kind: str, column: str) -> str:
    """SQL for the longest text of the column's truthy values (``NULL`` when none)."""
    truthy = {
        "int": f"{column} <> 0",
        "decimal": f"{column} <> 0",
        "bool": f"{column}",
        "text": f"{column} <> ''",
    }.get(kind, "true")
    return f"max(length({plain_text(kind, column)})) FILTER (WHERE {truthy})"


def writes_serials(raw: Any) -> bool:
    """Whether the psycopg connection's server writes the serials as ``repr()`` does: its
    shortest round-trip float output (``extra_float_digits`` above 0) and numeric infinities
    (PostgreSQL 14)."""
    if raw.connection.info.server_version < 140000:
        return False
    raw.execute("SHOW extra_float_digits")
    return int(raw.fetchone()[0]) > 0


class PostgresXLSXReader(PostgresChunkReader):
    """Sheet XML formatted by PostgreSQL, deflated into the workbook by the writer."""

    writer: XLSXWriter

    def records(self, kinds: Sequence[str], columns: Sequence[str]) -> tuple[str, bytes, Any]:
        return row_xml(kinds, columns), b"", fix_sheet_xml

    def read(self, after: Any, limit: int, *, first: bool) -> Chunk:
        chunk = super().read(after, limit, first=first)
        if not chunk.count:
            return chunk
        if self.writer.widths is None:
            self.writer.widths = self.first_chunk_widths(limit)
        data = self.writer.encode_sheet_rows(b"".join(chunk.pieces()), chunk.count)
        return Chunk(data, chunk.count, chunk.last_key)

    def first_chunk_widths(self, limit: int) -> list[float]:
        """The column widths of the export's first ``limit`` rows."""
        plan = self.plan
        sql, params = plan.values_sql(plan.queryset, "pk", *self.fields, limit=limit)
        columns = [f"t.c{index}" for index in range(1, len(self.kinds) + 1)]
        longest = ", ".join(
            longest_text(kind, column) for kind, column in zip(self.kinds, columns, strict=True)
        )
        with connections[plan.alias].cursor() as cursor:
            cursor.execute(f"SELECT {longest} FROM ({sql}) t({plan.names})", params)
            lengths = cursor.fetchone()
        return [
            clamped_width(length or 0, name)
            for length, name in zip(lengths, self.writer.headers, strict=True)
        ]
