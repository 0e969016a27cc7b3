"""The PostgreSQL fast path's reader: the database formats the rows, Python only moves bytes.

The records (``postgres_records``) of a *piece* of up to ``PIECE_ROWS`` consecutive rows are
joined into one value by ``string_agg`` and streamed by ``COPY ... TO STDOUT (FORMAT
binary)`` on a connection of the reader's own: a chunk is a few values, not thousands of rows.
One ``COPY`` reads a *segment* of up to ``SEGMENT_CHUNKS`` chunks, planned as a whole; the keys
where its pieces end are read first in the same repeatable-read snapshot, and each piece comes
back with its row count and last key, which are checked. Progress, pause and cancel still act
between chunks. ``fast_path.postgres_reader`` decides which exports it takes; why it is built
so, with measurements: docs/performance.md, "The PostgreSQL fast path".
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet

from django_report_export.exceptions import ReportExportError
from django_report_export.formats.base import FormatWriter
from django_report_export.formats.csv import CSVWriter
from django_report_export.formats.json import JSONWriter
from django_report_export.formats.xml import XMLWriter
from django_report_export.readers.base import Chunk, ChunkReader
from django_report_export.readers.postgres_records import (
    INT_KEY,
    CSVRecords,
    KeyType,
    UnsplitRecords,
    csv_record,
    csv_unquoted_record,
    fix_json,
    fix_xml,
    json_record,
    literal,
    xml_record,
)

#: A stream (one COPY) reads at most this many chunks: the database plans the join of a whole
#: segment at once (a hash join, where a chunk alone would get a nested loop), and the first
#: chunk of a segment still comes within about a second.
SEGMENT_CHUNKS = 100
#: The first segment of a stream is this many chunks: a segment's first piece comes once the
#: database has built and sorted all of its records, and the first rows of an export should
#: not wait for half a million.
FIRST_SEGMENT_CHUNKS = 1
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
class StreamPlan:
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
    #: What ends every chunk (JSON Lines' last line end); when set, nothing starts one.
    chunk_end: bytes = b""
    #: What quotes the texts of CSV records built by ``csv_unquoted_record``.
    csv: CSVRecords | None = None
    #: Rows per piece, ``None`` for ``PIECE_ROWS`` (documents, some kilobytes a record, have
    #: fewer: a piece's bytes are copied as they come, and a chunk of 1 MB pieces keeps far
    #: more of the work horse's memory than the pieces hold).
    piece_rows: int | None = None

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

    def source(self, after: Any, upper: Any) -> tuple[str, tuple[Any, ...]]:
        """The ``FROM`` of the records of the key range ``(after, upper]``: the rows as
        ``t(c0, c1, ...)``, ``c0`` the key."""
        inner, params = self.values_sql(
            self.after(after).filter(pk__lte=upper).order_by(), "pk", *self.fields
        )
        return f"({inner}) t({self.names})", params

    def pieces_sql(
        self, after: Any, upper: Any, lower_bounds: list[Any]
    ) -> tuple[str, tuple[Any, ...]]:
        """``COPY`` of the pieces of the key range ``(after, upper]``: for each, its row count,
        last key and records. The rows are not ordered inside, so that the records can be
        built below the sort (by parallel workers); ``ORDER BY k`` keeps ``string_agg``'s
        order exact whatever the plan."""
        source, params = self.source(after, upper)
        sql = (
            f"COPY (SELECT count(*), {self.key.largest.format('x.k')}, "
            f"string_agg(x.r, {self.separator_sql} ORDER BY x.k) "
            f"FROM (SELECT {self.record} AS r, t.c0 AS k, "
            f"width_bucket(t.c0, %s::{self.key.array}) AS b "
            f"FROM {source} ORDER BY b, t.c0) x "
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

    name = "postgresql-copy"

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
        record, separator, fix = self.records(self.kinds, columns)
        csv, escapes = (fix, None) if isinstance(fix, CSVRecords) else (None, fix)
        self.plan = StreamPlan(
            queryset,
            tuple(self.fields),
            queryset.db,
            record,
            names,
            literal(separator.decode()),
            separator,
            escapes,
            key,
            writer.chunk_end if isinstance(writer, JSONWriter) else b"",
            csv,
        )
        self._stream = _Stream(queryset.db)
        self._resume_key: Any = None
        self._limit = 0
        weakref.finalize(self, self._stream.close)

    def records(
        self, kinds: Sequence[str], columns: Sequence[str]
    ) -> tuple[str, bytes, Callable[[bytes], bytes] | CSVRecords | None]:
        """The SQL of a record over ``columns`` (of ``kinds``), what joins two, and the escapes
        on each piece's bytes; readers of other writers have their own (``postgres_xlsx``).

        CSV records are built unquoted and quoted in Python (``CSVRecords``), but for a single
        column (whose empty cell is ``""``) and decimals with a ``,`` (a quoted character)."""
        writer = self.writer
        if isinstance(writer, CSVWriter):
            guard, options = writer.formula_guard, writer.options
            record = csv_record(kinds, columns, guard, options)
            if len(kinds) < 2 or options.decimal_separator != ".":
                return record, b"", None
            unquoted = csv_unquoted_record(kinds, columns, guard)
            return unquoted, b"", CSVRecords(len(kinds), guard, options, record)
        if isinstance(writer, JSONWriter):
            # JSON Lines: a line end between two records, not a comma too.
            return json_record(writer.columns, kinds, columns), writer.object_separator, fix_json
        if isinstance(writer, XMLWriter):
            return xml_record(writer, kinds, columns), b"", fix_xml
        raise TypeError(f"No PostgreSQL records for {type(writer).__name__}.")

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
        except UnsplitRecords:
            # A text holds a separator of the unquoted records: the chunk is read again, with
            # the rest of the export, quoted by the database.
            self._quote_in_sql()
            return self.read(after, limit, first=first)
        except BaseException:
            stream.close()
            raise
        self._resume_key = chunk.last_key
        if self.plan.csv is not None and self.plan.csv.quotes_in_sql:
            self._quote_in_sql()  # from the next chunk on
        if chunk.count < limit:
            stream.close()  # The export's last chunk: nothing more will be read.
        if chunk.count and self.plan.chunk_end:
            more = (*chunk.more, self.plan.chunk_end)
            return Chunk(chunk.data, chunk.count, chunk.last_key, more)
        if chunk.count and not first and self.plan.separator:
            more = (chunk.data, *chunk.more)
            return Chunk(self.plan.separator, chunk.count, chunk.last_key, more)
        return chunk

    def _quote_in_sql(self) -> None:
        """The CSV records from the next read on quoted by the database (``csv_record``)."""
        assert self.plan.csv is not None
        self._stream.close()
        self.plan = dataclasses.replace(self.plan, record=self.plan.csv.record, csv=None)

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
    plan: StreamPlan, stream: _Stream, after: Any, limit: int
) -> Generator[Chunk, None, None]:
    """Chunks of ``limit`` rows after the key ``after``, segment by segment."""
    raw = stream.raw_connection()
    piece = min(limit, plan.piece_rows or PIECE_ROWS)
    segment_chunks = min(FIRST_SEGMENT_CHUNKS, SEGMENT_CHUNKS)
    while True:
        with raw.transaction(), raw.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            # A segment's query costs enough for the planner to compile it (JIT) in each of
            # its processes, 0.1 to 0.2 s a segment, which its rows never win back.
            cursor.execute("SET LOCAL jit = off")
            keys, params = plan.values_sql(plan.after(after), "pk", limit=limit * segment_chunks)
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
        segment_chunks = SEGMENT_CHUNKS


def _chunks(plan: StreamPlan, read: Callable[[], Any], segment: _Segment) -> Iterator[Chunk]:
    """The segment's chunks, from its pieces (one per ``read()``). A chunk holds its pieces
    as they came, the separator between two, not joined: a copy of the whole chunk less."""
    pieces = iter(zip(segment.ends, segment.sizes, strict=True))
    header = bytes(read())
    if header[: len(_BINARY_SIGNATURE)] != _BINARY_SIGNATURE:
        raise StreamError("COPY (FORMAT binary) did not start with its header.")
    pending = header[_BINARY_HEADER_SIZE:]  # The header may come with the first piece.
    for count in segment.chunk_pieces:
        texts: list[bytes] = []
        rows = 0
        for _ in range(count):
            end, size = next(pieces)
            row = pending or read()
            pending = b""
            text = _piece_text(plan.key, row, end, size)
            if plan.fix is not None:
                text = plan.fix(text)
            if plan.csv is not None:
                text = plan.csv(text, size)
            if texts and plan.separator:
                texts.append(plan.separator)
            texts.append(text)
            rows += size
        yield Chunk(texts[0], rows, end, tuple(texts[1:]))


def _piece_text(key: KeyType, row: Any, end: Any, size: int) -> bytes:
    """The records of a piece's row, checked against the piece expected."""
    header = key.header
    if len(row) < header.size:
        raise StreamError("COPY returned fewer pieces than were counted.")
    fields, _, rows, _, last_key, length = header.unpack_from(row)
    if fields != 3 or rows != size or key.load(last_key) != end or length != len(row) - header.size:
        raise StreamError("A piece does not hold the rows that were counted.")
    return bytes(row[header.size :])
