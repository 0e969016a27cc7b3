"""The PostgreSQL fast path: the database formats the rows, Python only moves bytes.

For a built-in writer on PostgreSQL with psycopg 3, the export's rows are turned into the
writer's exact bytes by SQL built around the queryset's own SQL (so filters and relation joins
are Django's), streamed by ``COPY`` and cut into keyset chunks as they arrive:

* CSV: ``COPY (SELECT <cells> FROM (<rows>) t) TO STDOUT WITH (FORMAT csv)``. PostgreSQL quotes
  a cell exactly when RFC 4180 needs it (a comma, a quote, ``\\r`` or ``\\n``) and ends records
  with ``\\n``, like ``CSVWriter``.
* JSON (and XML, see ``FAST_FORMATS``): ``COPY (SELECT <record text> ...) TO STDOUT WITH
  (FORMAT binary)``, one text value per record, nothing to unescape.

One ``COPY`` reads a *segment* of up to ``SEGMENT_CHUNKS`` chunks, planned as a whole (a chunk
alone gets a nested loop or a hash join over a whole related table, three to five times
slower), on a connection of the reader's own; the keys where its chunks end are read first in
the same repeatable-read snapshot. Progress, pause and cancel still act between chunks.

Every cell is written in SQL exactly as the Python writer writes the value Django returns:
booleans ``true``/``false``, datetimes ``isoformat()`` of the UTC value (microseconds only when
not zero), decimals as their digits, JSON strings escaped as orjson escapes them, XML text
escaped as ``formats/xml.py`` does (its forbidden characters replaced in each chunk's bytes).
A column of any other type (floats, JSON, durations, times, arrays, ...), a queryset whose SQL
cannot be wrapped safely (``distinct()``, aggregates, ``extra()``, unions), a project's own
writer, a connection inside a transaction, or one whose datetimes Django does not return in
UTC: ``postgres_reader`` returns ``None`` and the ORM reader does the export, with the same
bytes, only slower.

``tests/test_readers.py`` proves the byte identity with the ORM reader for every built-in
format and every demo service, with awkward values; the benchmark (``python -m bench``) checks
it again on a million rows.
"""

from __future__ import annotations

import contextlib
import re
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
from django_report_export.formats.csv import CSVWriter
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

#: ``isoformat()`` of a UTC datetime; ``.000000`` (no microseconds) is removed afterwards.
_ISO_DATETIME = '\'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\''
#: Characters XML 1.0 forbids that a PostgreSQL text can hold (it cannot hold NUL or lone
#: surrogates), as an E'' literal, and as many U+FFFD to replace them with.
#: First characters the CSV formula guard prefixes with ``'``: = + - @ tab CR.
_FORMULA_CODES = "61, 43, 45, 64, 9, 13"


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


def xml_escape(column: str) -> str:
    """SQL for ``formats.xml.escape_text`` but for the characters XML forbids, which are
    replaced in the chunk's bytes afterwards (``replace_forbidden``): one pass over a chunk in
    Python is much cheaper than ``translate()`` of every value in SQL."""
    return (
        f"replace(replace(replace(replace({column}, '&', '&amp;'), '<', '&lt;'), "
        f"'>', '&gt;'), E'\\r', '&#13;')"
    )


#: The UTF-8 of the characters XML 1.0 forbids that PostgreSQL text can hold: control bytes
#: (never part of a longer sequence in UTF-8), U+FFFE and U+FFFF. No tag holds any of them.
_FORBIDDEN_BYTES = bytes([*range(1, 9), 0x0B, 0x0C, *range(0x0E, 0x20)])
_FORBIDDEN_RE = re.compile(b"[\x01-\x08\x0b\x0c\x0e-\x1f]|\xef\xbf[\xbe\xbf]")
_REPLACEMENT = "\ufffd".encode()


def replace_forbidden(data: bytes) -> bytes:
    """``data`` with every character XML forbids replaced by U+FFFD, as ``escape_text`` does."""
    if (
        len(data.translate(None, _FORBIDDEN_BYTES)) == len(data)
        and b"\xef\xbf\xbe" not in data
        and b"\xef\xbf\xbf" not in data
    ):
        return data
    return _FORBIDDEN_RE.sub(_REPLACEMENT, data)


def csv_cell(kind: str, column: str, guard: bool) -> str:
    """SQL for a cell as ``CSVWriter`` writes it, before COPY's quoting.

    ``NULL`` and ``''`` both come out as an empty unquoted cell (COPY would quote ``''``)."""
    if kind in ("int", "decimal", "uuid"):
        return column  # COPY writes these exactly as ``str()`` of the Python value.
    if kind == "text":
        if not guard:
            return f"NULLIF({column}, '')"
        return (
            f"CASE WHEN ascii({column}) IN ({_FORMULA_CODES}) THEN '''' || {column} "
            f"ELSE NULLIF({column}, '') END"
        )
    return plain_text(kind, column)


def json_value(kind: str, column: str) -> str:
    """SQL for the JSON of a value as ``JSONWriter`` writes it (``null`` for ``NULL``)."""
    if kind == "text":
        text = f"to_json({column})::text"  # Escapes exactly as orjson does (tested).
    elif kind in ("int", "bool"):
        text = f"{column}::text"
    else:  # decimal (a string, as DRF writes it), datetime, date, uuid: strings.
        text = f"'\"' || {plain_text(kind, column)} || '\"'"
    return f"COALESCE({text}, 'null')"


def xml_element(kind: str, column: str, tag: str) -> str:
    """SQL for a column's XML element, ``NULL`` (so left out) when the value is ``NULL``."""
    text = xml_escape(column) if kind == "text" else plain_text(kind, column)
    return f"{literal(f'<{tag}>')} || {text} || {literal(f'</{tag}>')}"


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


#: The writers whose exports the fast path takes by default. XML is left to the generic path:
#: the record text built in SQL (an escape chain and four concatenations a column) measured
#: slower than the column-wise Python writer on the benchmark's machine (13.8 s against
#: 11.9 s for a million orders); ``postgres_reader(..., formats=ALL_FORMATS)`` still writes
#: it, byte for byte (``tests/test_readers.py``).
FAST_FORMATS: tuple[type[FormatWriter], ...] = (CSVWriter, JSONWriter)
ALL_FORMATS: tuple[type[FormatWriter], ...] = (CSVWriter, JSONWriter, XMLWriter)


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
    if writer_class is CSVWriter and len(fields) < 2:
        # One-column CSV: Python writes "" for an empty record and COPY quotes a lone "\.".
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
    if len(oids) != len(fields) + 1 or oids[0] not in INT_OIDS:
        return None
    kinds = [KINDS.get(oid) for oid in oids[1:]]
    if None in kinds or ("datetime" in kinds and not _is_utc(connection)):
        return None
    return PostgresChunkReader(queryset, fields, writer, kinds)  # type: ignore[arg-type]


# --- The reader -----------------------------------------------------------------------------

#: A stream (one COPY) reads at most this many chunks: the database plans the join of a whole
#: segment at once (a hash join, where a chunk alone would get a nested loop), and the first
#: chunk of a segment still comes within about a second.
SEGMENT_CHUNKS = 100

#: The start of a ``COPY ... (FORMAT binary)`` stream: signature, flags, header extension.
_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_BINARY_HEADER_SIZE = len(_BINARY_SIGNATURE) + 8
#: Each row of a one-column binary COPY starts with its field count (int16) and length (int32).
_BINARY_ROW_PREFIX = 6
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
    #: The formatted column(s) over ``t(c0, c1, ...)``: CSV cells, or one record's text.
    select: str
    names: str
    binary: bool
    separator: bytes
    #: XML: the characters XML forbids are replaced in each chunk's bytes.
    xml: bool = False

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


class PostgresChunkReader(ChunkReader):
    """Chunks formatted by PostgreSQL, streamed by ``COPY`` on a connection of its own.

    Each *segment* of up to ``SEGMENT_CHUNKS`` chunks is one ``COPY`` of the key range
    ``(after, upper]`` in a repeatable-read transaction; the keys where its chunks end are read
    first in the same transaction, so every chunk holds exactly ``limit`` rows (the last one of
    the export fewer) and ends at a known key. Between two ``read()`` calls the stream waits
    (the socket's backpressure holds the server back) while the job reports progress and
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
    ) -> None:
        super().__init__(queryset, list(fields), writer)
        self.kinds = list(kinds)
        names = ", ".join(f"c{index}" for index in range(len(kinds) + 1))
        columns = [f"t.c{index}" for index in range(1, len(kinds) + 1)]
        separator = b""
        binary = True
        if isinstance(writer, CSVWriter):
            guard = writer.formula_guard
            select = ", ".join(
                csv_cell(kind, column, guard) for kind, column in zip(kinds, columns, strict=True)
            )
            binary = False
        elif isinstance(writer, JSONWriter):
            parts = []
            for index, (name, kind, column) in enumerate(
                zip(writer.columns, kinds, columns, strict=True)
            ):
                key = ("{" if index == 0 else ",") + orjson.dumps(name).decode() + ":"
                parts += [literal(key), json_value(kind, column)]
            parts.append("'}'")
            select = " || ".join(parts)
            separator = b",\n"
        else:
            assert isinstance(writer, XMLWriter)
            elements = [
                xml_element(kind, column, tag)
                for kind, column, tag in zip(kinds, columns, writer.element_names, strict=True)
            ]
            record_start = literal(f"<{writer.record_name}>")
            record_end = literal(f"</{writer.record_name}>\n")
            select = f"concat({record_start}, {', '.join(elements)}, {record_end})"
        self.plan = _Plan(
            queryset,
            tuple(self.fields),
            queryset.db,
            select,
            names,
            binary,
            separator,
            xml=isinstance(writer, XMLWriter),
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


def _stream_chunks(
    plan: _Plan, stream: _Stream, after: Any, limit: int
) -> Generator[Chunk, None, None]:
    """Chunks of ``limit`` rows after the key ``after``, segment by segment."""
    raw = stream.raw_connection()
    while True:
        with raw.transaction(), raw.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            keys, params = plan.values_sql(plan.after(after), "pk", limit=limit * SEGMENT_CHUNKS)
            cursor.execute(
                "SELECT array_agg(w.k ORDER BY w.n) FILTER (WHERE w.n %% %s = 0), "
                "count(*), max(w.k) FROM (SELECT q.k, row_number() OVER (ORDER BY q.k) "
                f"FROM ({keys}) q(k)) w(k, n)",
                (limit, *params),
            )
            ends, count, upper = cursor.fetchone()
            if not count:
                yield Chunk(b"", 0, None)
                return
            ends = list(ends or ())
            sizes = [limit] * len(ends)
            if count % limit:
                ends.append(upper)
                sizes.append(count % limit)
            inner, params = plan.values_sql(
                plan.after(after).filter(pk__lte=upper), "pk", *plan.fields
            )
            copy_format = "binary" if plan.binary else "csv"
            sql = (
                f"COPY (SELECT {plan.select} FROM ({inner}) t({plan.names}) ORDER BY t.c0) "
                f"TO STDOUT WITH (FORMAT {copy_format})"
            )
            with cursor.copy(sql, params) as copy:
                yield from _split(plan, copy.read, ends, sizes)
                rest = copy.read()
                if plan.binary and bytes(rest) == _BINARY_TRAILER:
                    rest = copy.read()
                if rest:
                    raise StreamError(f"COPY returned more than the {count} rows counted.")
        after = upper


def _split(
    plan: _Plan, read: Callable[[], Any], ends: list[Any], sizes: list[int]
) -> Iterator[Chunk]:
    """The stream's rows (one per ``read()``), ``sizes[i]`` rows per chunk."""
    for index, (end, size) in enumerate(zip(ends, sizes, strict=True)):
        rows = [read() for _ in range(size)]
        if not rows[-1]:
            raise StreamError("COPY returned fewer rows than were counted.")
        if plan.binary:
            if index == 0:
                if bytes(rows[0][: len(_BINARY_SIGNATURE)]) != _BINARY_SIGNATURE:
                    raise StreamError("COPY (FORMAT binary) did not start with its header.")
                rows[0] = rows[0][_BINARY_HEADER_SIZE:]
            data = plan.separator.join([row[_BINARY_ROW_PREFIX:] for row in rows])
            if plan.xml:
                data = replace_forbidden(data)
        else:
            data = b"".join(rows)
        yield Chunk(data, size, end)
