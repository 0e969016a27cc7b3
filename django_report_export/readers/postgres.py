"""The PostgreSQL fast path: the database formats the rows, Python only moves bytes.

For a built-in writer on PostgreSQL with psycopg 3, the export's rows are turned into the
writer's exact bytes by SQL built around the queryset's own SQL (so filters and relation joins
are Django's): each record's text is built in SQL (CSV cells quoted as RFC 4180 needs, JSON
objects, XML elements), and the records of a *piece* (up to ``PIECE_ROWS`` consecutive rows)
are joined into one value by ``string_agg``, streamed by ``COPY ... TO STDOUT (FORMAT
binary)``: a chunk is a few values, not thousands of rows to receive and join one by one.

One ``COPY`` reads a *segment* of up to ``SEGMENT_CHUNKS`` chunks, planned as a whole (a chunk
alone gets a nested loop or a hash join over a whole related table, three to five times
slower), on a connection of the reader's own; the keys where its pieces end are read first in
the same repeatable-read snapshot, and each piece comes back with its row count and last key,
which are checked. The queryset's SQL is wrapped without its ``ORDER BY``, so that PostgreSQL
can build the records in its parallel workers, before the sort. Progress, pause and cancel
still act between chunks.

Every cell is written in SQL exactly as the Python writer writes the value Django returns:
booleans ``true``/``false``, datetimes ``isoformat()`` of the UTC value (microseconds only when
not zero), decimals as their digits, JSON strings escaped as orjson escapes them, XML text
escaped as ``formats/xml.py`` does. Two rare escapes are cheaper over a chunk's bytes in
Python than over every value in SQL, and are done there: JSON's escapes of control characters
other than line feeds, and XML's ``&#13;`` for carriage returns and U+FFFD for the characters
XML forbids (``fix_json``, ``fix_xml``). A column of any other type (floats, JSON, durations,
times, arrays, ...), a primary key that is neither an integer nor a UUID (the pieces are cut
by key ranges whose bounds are the key after each piece's last one: a text has no next value
SQL can name in every collation), a queryset whose SQL cannot be wrapped safely
(``distinct()``, aggregates, ``extra()``, unions), a project's own writer, a connection inside
a transaction, or one whose datetimes Django does not return in UTC: ``postgres_reader``
returns ``None`` and the ORM reader does the export, with the same bytes, only slower.

``tests/test_readers.py`` proves the byte identity with the ORM reader for every built-in
format and every demo service, with awkward values; the benchmark (``python -m bench``) checks
it again on a million rows.
"""

from __future__ import annotations

import contextlib
import re
import struct
import uuid
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet

from django_report_export.exceptions import ReportExportError
from django_report_export.formats.base import FormatWriter
from django_report_export.formats.csv import (
    FORMULA_AFTER_BREAK,
    FORMULA_ANYWHERE,
    FORMULA_AT_START,
    FORMULA_SIGNS,
    LEADING_WHITESPACE,
    QUOTED_CHARACTERS,
    CSVWriter,
)
from django_report_export.formats.json import JSONWriter
from django_report_export.formats.xml import XMLWriter
from django_report_export.readers.base import Chunk, ChunkReader

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


def csv_cell(kind: str, column: str, guard: bool) -> str:
    """SQL for a cell as ``CSVWriter`` writes it, ``NULL`` for an empty cell.

    A text is quoted when it holds one of ``QUOTED_CHARACTERS`` (its quotes doubled). With the
    formula guard on it gets the writer's ``'`` marks, found with the writer's own regular
    expressions. Every cell break and the quote are quoted characters, so a text that is not
    quoted can need a mark only at its start, which its first character mostly tells without
    a regular expression."""
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
    starts_like_formula = (
        f"ascii({column}) IN ({_FORMULA_CODES})"
        f" OR (ascii({column}) IN ({_WHITESPACE_CODES}) AND {at_start})"
    )
    return (
        f"CASE WHEN {special} THEN {csv_quoted(guarded)}"
        f" WHEN {starts_like_formula} THEN '''' || {column} ELSE {column} END"
    )


def csv_quoted(text: str) -> str:
    """SQL for ``text`` in quotes, its quotes doubled."""
    return f"'\"' || replace({text}, '\"', '\"\"') || '\"'"


def csv_record(kinds: Sequence[str], columns: Sequence[str], guard: bool) -> str:
    """SQL for a CSV record and its line end (a ``NULL`` cell empty)."""
    cells = [csv_cell(kind, column, guard) for kind, column in zip(kinds, columns, strict=True)]
    if len(cells) == 1:
        # A record of one empty cell is written "", not as an empty line.
        return f"COALESCE(NULLIF({cells[0]}, ''), '\"\"') || E'\\n'"
    # ``||`` rather than ``concat()``, which looks up each argument's output function per row.
    return " || ',' || ".join(f"COALESCE({cell}, '')" for cell in cells) + " || E'\\n'"


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


# --- Choosing the fast path -----------------------------------------------------------------


def _is_utc(connection: BaseDatabaseWrapper) -> bool:
    """Whether Django returns this connection's ``timestamptz`` values in UTC (aware values
    whose ``isoformat()`` ends ``+00:00``)."""
    return bool(settings.USE_TZ) and connection.timezone_name == "UTC"


def _wrappable(queryset: QuerySet[Any]) -> bool:
    """Whether the queryset's SQL is one row per object, ordered by the primary key."""
    query = queryset.query
    return not (
        query.distinct
        or query.combinator
        or query.group_by is not None
        or query.annotations
        or query.extra
        or query.extra_tables
        or query.is_sliced
        or query.select_for_update
        or tuple(query.order_by) not in (("pk",), (queryset.model._meta.pk.name,))
    )


def _uses_psycopg3() -> bool:
    try:
        from django.db.backends.postgresql.psycopg_any import is_psycopg3
    except ImportError:  # pragma: no cover - no PostgreSQL driver at all
        return False
    return bool(is_psycopg3)


#: The writers whose exports the fast path takes by default: all the built-in ones.
FAST_FORMATS: tuple[type[FormatWriter], ...] = (CSVWriter, JSONWriter, XMLWriter)
ALL_FORMATS = FAST_FORMATS


def postgres_reader(
    queryset: QuerySet[Any],
    fields: Sequence[str],
    writer: FormatWriter,
    formats: Sequence[type[FormatWriter]] = FAST_FORMATS,
) -> PostgresChunkReader | None:
    """The fast reader for this export, or ``None`` when it cannot write the same bytes
    (or, for a writer not in ``formats``, would not write them faster)."""
    connection = connections[queryset.db]
    writer_class = type(writer)
    if connection.vendor != "postgresql" or not _uses_psycopg3():
        return None
    if writer_class not in formats or writer_class not in ALL_FORMATS or not fields:
        return None
    if writer_class is JSONWriter and len(set(writer.columns)) != len(writer.columns):
        return None  # Equal keys collapse into one in the Python writer.
    if not _wrappable(queryset) or connection.in_atomic_block:
        # In a transaction, rows it wrote are not visible to the reader's own connection.
        return None
    probe = queryset.values_list("pk", *fields)
    compiler = probe.query.get_compiler(using=queryset.db)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        return None  # A filter no row can match: the ORM reader writes the empty export.
    if compiler.get_converters([expression for expression, _, _ in compiler.select]):
        return None  # Django changes some value in Python (a field's from_db_value, say).
    with connection.cursor() as cursor:
        raw = cursor.cursor
        info = raw.connection.info
        if info.encoding != "utf-8" or info.parameter_status("standard_conforming_strings") != "on":
            return None
        cursor.execute(f"SELECT * FROM ({sql}) t LIMIT 0", params)
        oids = [column.type_code for column in cursor.description]
    if len(oids) != len(fields) + 1 or oids[0] not in KEY_TYPES:
        return None
    kinds = [KINDS.get(oid) for oid in oids[1:]]
    if None in kinds or ("datetime" in kinds and not _is_utc(connection)):
        return None
    key = KEY_TYPES[oids[0]]
    return PostgresChunkReader(queryset, fields, writer, kinds, key)  # type: ignore[arg-type]


# --- The reader -----------------------------------------------------------------------------

#: A stream (one COPY) reads at most this many chunks: the database plans the join of a whole
#: segment at once (a hash join, where a chunk alone would get a nested loop), and the first
#: chunk of a segment still comes within about a second.
SEGMENT_CHUNKS = 100
#: Rows per ``string_agg`` value: a chunk is one or more pieces, so that no value nears
#: PostgreSQL's 1 GB limit and each piece's sort in the aggregate stays in memory.
PIECE_ROWS = 1000

#: The start of a ``COPY ... (FORMAT binary)`` stream: signature, flags, header extension.
_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_BINARY_HEADER_SIZE = len(_BINARY_SIGNATURE) + 8
#: The end of a binary COPY stream: a field count of -1.
_BINARY_TRAILER = b"\xff\xff"


class StreamError(ReportExportError):
    """The COPY stream did not hold the rows counted before it (a bug if it ever happens)."""


class _Stream:
    """A reader's own database connection and the generator of chunks streaming on it.

    Kept apart from the reader (the generator does not refer to the reader), so the reader is
    freed as soon as the job drops it, and its finalizer closes the stream: an export that
    pauses or is canceled mid-stream leaves no open transaction behind.
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.connection: BaseDatabaseWrapper | None = None
        self.chunks: Generator[Chunk, None, None] | None = None

    def raw_connection(self) -> Any:
        """The psycopg connection of the stream's own ``DatabaseWrapper`` (a copy of the
        alias's), so that Django's connection stays free for the job between chunks."""
        if self.connection is None:
            self.connection = connections[self.alias].copy()
        self.connection.ensure_connection()
        self.connection.set_autocommit(True)
        return self.connection.connection

    def close(self) -> None:
        chunks, self.chunks = self.chunks, None
        connection, self.connection = self.connection, None
        if connection is not None:
            # Closed first, so that ending the generator does not read the rest of the COPY.
            with contextlib.suppress(Exception):
                connection.close()
        if chunks is not None:
            with contextlib.suppress(Exception):
                chunks.close()


@dataclass(frozen=True)
class _Plan:
    """What a stream needs to know: the rows, and the SQL that formats them."""

    queryset: QuerySet[Any]
    fields: tuple[str, ...]
    alias: str
    #: One record's text over ``t(c0, c1, ...)``, its line end included for CSV and XML.
    record: str
    names: str
    #: What ``string_agg`` puts between two records, as SQL, and between two pieces.
    separator_sql: str
    separator: bytes
    #: The escapes done on a chunk's bytes (``fix_json``, ``fix_xml``), if any.
    fix: Callable[[bytes], bytes] | None
    key: KeyType

    def values_sql(
        self, queryset: QuerySet[Any], *fields: str, limit: int | None = None
    ) -> tuple[str, tuple[Any, ...]]:
        """The SQL Django runs for ``values_list(*fields)`` (ordered by ``pk``)."""
        values = queryset.values_list(*fields)
        if limit is not None:
            values = values[:limit]
        sql, params = values.query.get_compiler(using=self.alias).as_sql()
        return sql, tuple(params)

    def after(self, key: Any) -> QuerySet[Any]:
        return self.queryset if key is None else self.queryset.filter(pk__gt=key)

    def pieces_sql(self, after: Any, upper: Any, lower_bounds: list[Any]) -> tuple[str, tuple]:
        """``COPY`` of the pieces of the key range ``(after, upper]``: for each, its row count,
        last key and records. The rows are not ordered inside, so that the records can be
        built below the sort (by parallel workers); ``ORDER BY k`` keeps ``string_agg``'s
        order exact whatever the plan."""
        inner, params = self.values_sql(
            self.after(after).filter(pk__lte=upper).order_by(), "pk", *self.fields
        )
        sql = (
            f"COPY (SELECT count(*), {self.key.largest.format('x.k')}, "
            f"string_agg(x.r, {self.separator_sql} ORDER BY x.k) "
            f"FROM (SELECT {self.record} AS r, t.c0 AS k, "
            f"width_bucket(t.c0, %s::{self.key.array}) AS b "
            f"FROM ({inner}) t({self.names}) ORDER BY b, t.c0) x "
            "GROUP BY x.b ORDER BY x.b) TO STDOUT WITH (FORMAT binary)"
        )
        return sql, (lower_bounds, *params)


class PostgresChunkReader(ChunkReader):
    """Chunks formatted by PostgreSQL, streamed by ``COPY`` on a connection of its own.

    Each *segment* of up to ``SEGMENT_CHUNKS`` chunks is one ``COPY`` of the key range
    ``(after, upper]`` in a repeatable-read transaction; the keys where its pieces end are
    read first in the same transaction, so every chunk holds exactly ``limit`` rows (the last
    one of the export fewer) and ends at a known key. Between two ``read()`` calls the stream
    waits (the socket's backpressure holds the server back) while the job reports progress and
    saves checkpoints on Django's connection. A ``read()`` after any other key than the last
    one returned (a retry, a resumed export) starts a new stream from there. The stream ends
    with the export's last chunk, on ``close()``, or when the reader is freed.
    """

    def __init__(
        self,
        queryset: QuerySet[Any],
        fields: Sequence[str],
        writer: FormatWriter,
        kinds: Sequence[str],
        key: KeyType = INT_KEY,
    ) -> None:
        super().__init__(queryset, list(fields), writer)
        self.kinds = list(kinds)
        names = ", ".join(f"c{index}" for index in range(len(kinds) + 1))
        columns = [f"t.c{index}" for index in range(1, len(kinds) + 1)]
        fix: Callable[[bytes], bytes] | None = None
        if isinstance(writer, CSVWriter):
            record = csv_record(kinds, columns, writer.formula_guard)
            separator = b""
        elif isinstance(writer, JSONWriter):
            record = json_record(writer.columns, kinds, columns)
            separator = b",\n"
            fix = fix_json
        else:
            assert isinstance(writer, XMLWriter)
            record = xml_record(writer, kinds, columns)
            separator = b""
            fix = fix_xml
        self.plan = _Plan(
            queryset,
            tuple(self.fields),
            queryset.db,
            record,
            names,
            literal(separator.decode()),
            separator,
            fix,
            key,
        )
        self._stream = _Stream(queryset.db)
        self._resume_key: Any = None
        self._limit = 0
        weakref.finalize(self, self._stream.close)

    def read(self, after: Any, limit: int, *, first: bool) -> Chunk:
        stream = self._stream
        chunks = stream.chunks
        if chunks is None or after != self._resume_key or limit != self._limit:
            stream.close()
            chunks = stream.chunks = _stream_chunks(self.plan, stream, after, limit)
            self._limit = limit
        try:
            # psycopg's errors as Django's (OperationalError...), as from Django's own cursors:
            # the job reconnects and reads the chunk again after a dropped connection.
            with connections[self.plan.alias].wrap_database_errors:
                chunk = next(chunks)
        except BaseException:
            stream.close()
            raise
        self._resume_key = chunk.last_key
        if chunk.count < limit:
            stream.close()  # The export's last chunk: nothing more will be read.
        if chunk.count and not first and self.plan.separator:
            return Chunk(self.plan.separator + chunk.data, chunk.count, chunk.last_key)
        return chunk

    def close(self) -> None:
        """End the stream and close the reader's connection; a next read starts anew."""
        self._stream.close()


@dataclass(frozen=True)
class _Segment:
    """Where the pieces of a segment end, and how many of them make each chunk."""

    #: Each piece's last key and row count, in key order.
    ends: list[Any]
    sizes: list[int]
    #: Pieces per chunk, in order.
    chunk_pieces: list[int]


def _segment(ends: list[Any], count: int, limit: int, piece: int) -> _Segment:
    """The ``count`` rows of a segment cut into chunks of ``limit`` rows and those into
    pieces of ``piece``; ``ends`` are the keys of the rows that end a piece."""
    sizes: list[int] = []
    chunk_pieces: list[int] = []
    for start in range(0, count, limit):
        rows = min(limit, count - start)
        pieces = [piece] * (rows // piece) + ([rows % piece] if rows % piece else [])
        sizes += pieces
        chunk_pieces.append(len(pieces))
    if len(sizes) != len(ends):
        raise StreamError("The segment's piece ends do not match its row count.")
    return _Segment(ends, sizes, chunk_pieces)


def _stream_chunks(
    plan: _Plan, stream: _Stream, after: Any, limit: int
) -> Generator[Chunk, None, None]:
    """Chunks of ``limit`` rows after the key ``after``, segment by segment."""
    raw = stream.raw_connection()
    piece = min(limit, PIECE_ROWS)
    while True:
        with raw.transaction(), raw.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            keys, params = plan.values_sql(plan.after(after), "pk", limit=limit * SEGMENT_CHUNKS)
            # A row ends a piece where its place in its chunk is a multiple of the piece
            # size (0 for a chunk's last row), and the segment's last row does.
            cursor.execute(
                "SELECT array_agg(w.k ORDER BY w.n) FILTER (WHERE w.n %% %s %% %s = 0), "
                f"count(*), {plan.key.largest.format('w.k')} "
                "FROM (SELECT q.k, row_number() OVER (ORDER BY q.k) "
                f"FROM ({keys}) q(k)) w(k, n)",
                (limit, piece, *params),
            )
            ends, count, upper = cursor.fetchone()
            if not count:
                yield Chunk(b"", 0, None)
                return
            ends = list(ends or ())
            if count % limit % piece:
                ends.append(upper)
            segment = _segment(ends, count, limit, piece)
            bounds = [plan.key.successor(end) for end in ends[:-1]]
            sql, params = plan.pieces_sql(after, ends[-1], bounds)
            with cursor.copy(sql, params) as copy:
                yield from _chunks(plan, copy.read, segment)
                rest = bytes(copy.read())
                if rest == _BINARY_TRAILER:
                    rest = bytes(copy.read())
                if rest:
                    raise StreamError(f"COPY returned more than the {count} rows counted.")
        after = ends[-1]


def _chunks(plan: _Plan, read: Callable[[], Any], segment: _Segment) -> Iterator[Chunk]:
    """The segment's chunks, from its pieces (one per ``read()``)."""
    pieces = iter(zip(segment.ends, segment.sizes, strict=True))
    header = bytes(read())
    if header[: len(_BINARY_SIGNATURE)] != _BINARY_SIGNATURE:
        raise StreamError("COPY (FORMAT binary) did not start with its header.")
    pending = header[_BINARY_HEADER_SIZE:]  # The header may come with the first piece.
    for count in segment.chunk_pieces:
        texts, rows = [], 0
        for _ in range(count):
            end, size = next(pieces)
            row = pending or read()
            pending = b""
            texts.append(_piece_text(plan.key, row, end, size))
            rows += size
        data = plan.separator.join(texts)
        if plan.fix is not None:
            data = plan.fix(data)
        yield Chunk(data, rows, end)


def _piece_text(key: KeyType, row: Any, end: Any, size: int) -> bytes:
    """The records of a piece's row, checked against the piece expected."""
    header = key.header
    if len(row) < header.size:
        raise StreamError("COPY returned fewer pieces than were counted.")
    fields, _, rows, _, last_key, length = header.unpack_from(row)
    if fields != 3 or rows != size or key.load(last_key) != end or length != len(row) - header.size:
        raise StreamError("A piece does not hold the rows that were counted.")
    return bytes(row[header.size :])
