"""The generic reader: one ``values_list`` query per keyset chunk, encoded by the writer.

It runs the SQL Django compiles for ``values_list(...)[:limit]`` itself, fetches the chunk
whole and hands the writer exactly the values ``values_list`` would return (``ChunkRows``:
only the converted columns replaced, column by column by ``readers/converters.py``). Except
on SQLite the next chunk's query runs on a second connection while this one is encoded; on
SQLite a process of the reader's own reads and encodes every other chunk
(``readers/sqlite_process.py``). How and why, with measurements: docs/performance.md, "The
generic path".

Querysets this cannot run exactly so (``extra(select=...)``, composite keys) go through
Django's own ``values_list`` iteration.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet
from django.db.models.expressions import Col

from django_report_export.conf import export_settings
from django_report_export.formats.base import ChunkRows, FormatWriter
from django_report_export.formats.csv import CSVWriter
from django_report_export.formats.json import JSONWriter
from django_report_export.formats.jsonl import JSONLinesWriter
from django_report_export.formats.xml import XMLWriter
from django_report_export.readers.base import Chunk, ChunkReader, in_zone
from django_report_export.readers.converters import _convert
from django_report_export.readers.sqlite import SQLITE_TYPES, Source, SqliteRows
from django_report_export.readers.sqlite_process import ReadProcess

Rows = Sequence[Sequence[Any]]
#: A chunk's rows as fetched, and the values standing for some of their columns, by position.
Fetched = tuple[list[Any], dict[int, list[Any]]]


class _Query:
    """One chunk's compiled query: its SQL, and how to turn fetched rows into ``values_list``'s."""

    def __init__(self, values: QuerySet[Any]) -> None:
        self.values = values
        self.alias = values.db
        compiler = values.query.get_compiler(using=self.alias)
        self.empty = False
        try:
            self.sql, self.params = compiler.as_sql()
        except EmptyResultSet:
            self.empty = True
            return
        expressions = [select[0] for select in compiler.select[: compiler.col_count]]
        #: Whether Django's own iteration is needed (its results need more than converters).
        self.django_only = compiler.has_extra_select or compiler.has_composite_fields(expressions)
        self.converters = compiler.get_converters(expressions)
        #: The table and column of each result column, when all are plain table columns.
        self.sources: list[Source] | None = None
        if all(type(expression) is Col for expression in expressions):
            alias_map = values.query.alias_map
            self.sources = [
                (alias_map[expression.alias].table_name, expression.target.column)
                for expression in expressions
            ]

    def fetch(self) -> Fetched:
        """The raw rows, on the calling thread's connection to the database, and the values
        of the columns the driver left as text, by position (MySQL, ``readers/mysql.py``)."""
        connection = connections[self.alias]
        with connection.cursor() as cursor:
            if connection.vendor == "mysql":
                from django_report_export.readers.mysql import fetch_rows

                return fetch_rows(cursor, connection.connection, self.sql, self.params)
            if _loads_utc_natively(connection):
                _use_native_timestamptz_loader(cursor.cursor)
            cursor.execute(self.sql, self.params)
            return list(cursor.fetchall()), {}

    def convert(
        self, rows: list[Any], columns: dict[int, list[Any]] | None = None
    ) -> dict[int, list[Any]]:
        """The converted values of each column that has converters, by position in the
        select: with the rest of ``rows``, what ``values_list`` returns. ``columns`` holds
        the values of some columns that stand instead of those in ``rows``."""
        converted = dict(columns or {})
        if not rows or not self.converters:
            return converted
        connection = connections[self.alias]
        for position, (functions, expression) in self.converters.items():
            values = converted.get(position)
            if values is None:
                values = list(map(itemgetter(position), rows))
            converted[position] = _convert(values, functions, expression, connection)
        return converted


class _Prefetcher:
    """A thread with its own database connection that runs the next chunk's query."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.executor: ThreadPoolExecutor | None = None
        self.pending: tuple[Any, int, Future[Fetched]] | None = None
        self.lock = threading.Lock()

    def start(self, after: Any, limit: int, query: _Query) -> None:
        with self.lock:
            if self.executor is None:
                self.executor = ThreadPoolExecutor(1, thread_name_prefix="report-export-read")
            self.pending = (after, limit, self.executor.submit(query.fetch))

    def take(self, after: Any, limit: int) -> Future[Fetched] | None:
        """The query started for ``(after, limit)``, if that is the one started."""
        with self.lock:
            pending, self.pending = self.pending, None
        if pending is None:
            return None
        key, size, future = pending
        if key == after and size == limit:
            return future
        future.cancel()
        return None

    def close(self) -> None:
        """Stop the thread and close its connection (it is the thread's own)."""
        with self.lock:
            executor, self.executor = self.executor, None
            self.pending = None
        if executor is not None:
            with contextlib.suppress(RuntimeError):
                executor.submit(_close_connection, self.alias)
            executor.shutdown(wait=False, cancel_futures=False)


def _close_connection(alias: str) -> None:
    """Close the calling thread's connection to ``alias`` (``connections`` is per thread)."""
    connections[alias].close()


#: The writers whose chunks a process of the reader's own may encode (``_may_fork``).
_PROCESS_WRITERS = frozenset({CSVWriter, JSONWriter, JSONLinesWriter, XMLWriter})


class OrmChunkReader(ChunkReader):
    """The generic reader: ``values_list`` of one keyset chunk, encoded by the writer."""

    def __init__(
        self,
        queryset: QuerySet[Any],
        fields: list[Any],
        writer: FormatWriter,
        transforms: Mapping[int, Callable[[Any], Any]] | None = None,
    ) -> None:
        super().__init__(queryset, fields, writer)
        #: Python functions applied to each value of some columns, by position.
        self.transforms = dict(transforms or {})
        pk = queryset.model._meta.pk
        key_names = {"pk", pk.name, pk.attname} if pk is not None else {"pk"}
        #: Position of the primary key among the exported fields, if it is one of them.
        self.key_index = next(
            (
                index
                for index, name in enumerate(fields)
                if isinstance(name, str) and name in key_names
            ),
            None,
        )
        self.select = list(fields) if self.key_index is not None else ["pk", *fields]
        self._prefetcher = _Prefetcher(queryset.db)
        self._sqlite = SqliteRows(queryset.db)
        #: On SQLite, a process that reads every other chunk (``readers/sqlite_process.py``).
        self._process: ReadProcess | None = None
        weakref.finalize(self, self._prefetcher.close)
        weakref.finalize(self, self._sqlite.close)

    def read(self, after: Any, limit: int, *, first: bool) -> Chunk:
        with _collector_paused():
            return self._read(after, limit, first=first)

    def _read(self, after: Any, limit: int, *, first: bool) -> Chunk:
        process = self._process
        if process is not None and process.asked == (after, limit):
            taken = process.take()
            if taken is not None:
                if taken.count == limit:
                    self._ask_process(taken.last_key, limit)
                return taken
        elif process is not None and process.asked is None and not first:
            self._ask_process(after, limit)
        query = self._query(after, limit)
        rows, converted, raw_types = self._rows(query, after, limit)
        if len(rows) < limit:
            self.close()  # The export's last chunk.
        if not rows:
            return Chunk(b"", 0, None)
        last_key = self._last_key(rows, converted)
        if len(rows) == limit and self._may_prefetch():
            self._prefetcher.start(last_key, limit, self._query(last_key, limit))
        if process is not None and process.asked not in (None, (last_key, limit)):
            process.take()  # Rows came or went since it was asked: not the next chunk's.
        elif process is None and len(rows) == limit and self._may_fork(raw_types, first=first):
            self._process = ReadProcess(self._read_in_process, self._prepare_process)
            weakref.finalize(self, self._process.close)
            self._ask_process(last_key, limit)
        return self._encoded(rows, converted, raw_types, last_key, first=first)

    def _last_key(self, rows: Rows, converted: dict[int, list[Any]]) -> Any:
        key = 0 if self.key_index is None else self.key_index
        key_values = converted.get(key)
        return rows[-1][key] if key_values is None else key_values[-1]

    def _encoded(
        self,
        rows: Rows,
        converted: dict[int, list[Any]],
        raw_types: frozenset[type] | None,
        last_key: Any,
        *,
        first: bool,
    ) -> Chunk:
        """The chunk of the fetched ``rows`` (with their ``converted`` columns), encoded."""
        key = 0 if self.key_index is None else self.key_index
        key_values = converted.get(key)
        skip = 1 if self.key_index is None else 0
        replaced = {position - skip: values for position, values in converted.items()}
        replaced.pop(-1, None)  # The key that is not exported.
        chunk = ChunkRows(rows, len(self.fields), replaced, skip=skip, raw_types=raw_types)
        if self.transforms:
            chunk = chunk.replace(
                {
                    position: list(map(transform, chunk.column(position)))
                    for position, transform in self.transforms.items()
                }
            )
        if self.writer.options.timezone != "UTC":
            chunk = in_zone(chunk, self.writer.options.zone)
        if self.shapes:
            keys = list(map(itemgetter(key), rows)) if key_values is None else key_values
            return Chunk(b"", len(rows), last_key, self.shaped(chunk, keys, first=first))
        return Chunk(self.writer.encode_chunk(chunk, first=first), len(rows), last_key)

    # --- the process of the reader's own, on SQLite (readers/sqlite_process.py) ------------

    def _may_fork(self, raw_types: frozenset[type] | None, *, first: bool) -> bool:
        """Whether a process of the reader's own should read every other chunk: on SQLite,
        for chunks read on the reader's own connection (``raw_types``), of a built-in writer
        of the flat formats (their chunks do not depend on what came before; a project's own
        writer may keep what it encodes)."""
        return (
            not first
            and raw_types is SQLITE_TYPES
            and not self.shapes
            and type(self.writer) in _PROCESS_WRITERS
            and bool(export_settings.SQLITE_READ_PROCESS)
            and hasattr(os, "fork")
        )

    def _ask_process(self, start: Any, limit: int) -> None:
        """Have the process read the chunk after the one of the ``limit`` rows after
        ``start`` (which this process reads), if there is one."""
        assert self._process is not None
        ends = list(self.after(start).values_list("pk", flat=True)[limit - 1 : limit])
        if ends:
            self._process.ask(ends[0], limit)

    def _prepare_process(self) -> None:
        """In the process, before its first chunk: a SQLite connection of its own (the one
        inherited is not touched, not even closed)."""
        self._sqlite = SqliteRows(self.queryset.db)

    def _read_in_process(self, after: Any, limit: int) -> Chunk | None:
        """In the process: the chunk of the ``limit`` rows after ``after``, read on its own
        SQLite connection, or ``None`` when it cannot be read there."""
        with _collector_paused():
            query = self._query(after, limit)
            if query.empty or query.django_only or query.sources is None:
                return None
            fetched = self._sqlite.fetch(query.sql, query.params, query.sources)
            if fetched is None:
                return None
            rows, columns = fetched
            if not rows:
                return Chunk(b"", 0, None)
            converted = query.convert(rows, columns)
            last_key = self._last_key(rows, converted)
            return self._encoded(rows, converted, SQLITE_TYPES, last_key, first=False)

    #: Whether ``shaped`` turns the selected columns into other ones (documents do).
    shapes = False

    def shaped(self, chunk: ChunkRows, keys: list[Any], *, first: bool) -> Iterator[bytes]:
        """The chunk's bytes, from the selected columns and the rows' keys, as they are
        taken (the chunk is read when they are)."""
        yield self.writer.encode_chunk(chunk, first=first)

    def close(self) -> None:
        """Stop reading ahead and close the connections (and the process) of the reader's own."""
        self._prefetcher.close()
        self._sqlite.close()
        if self._process is not None:
            self._process.close()

    def _query(self, after: Any, limit: int) -> _Query:
        return _Query(self.after(after).values_list(*self.select)[:limit])

    def _rows(
        self, query: _Query, after: Any, limit: int
    ) -> tuple[Rows, dict[int, list[Any]], frozenset[type] | None]:
        """The chunk's rows as fetched, and the converted values of the columns that need
        converting (by position in the select): together, what ``list(values)`` gives.
        Then the types the fetched values have, when known without looking at them."""
        if query.empty:
            return [], {}, None
        if query.django_only:
            return list(query.values), {}, None
        if query.sources is not None and self._sqlite.usable():
            fetched = self._sqlite.fetch(query.sql, query.params, query.sources)
            if fetched is not None:
                return fetched[0], query.convert(*fetched), SQLITE_TYPES
        future = self._prefetcher.take(after, limit)
        if future is not None:
            try:
                raw, columns = future.result()
            except BaseException:
                self.close()
                raise
        else:
            raw, columns = query.fetch()
        return raw, query.convert(raw, columns), None

    def _may_prefetch(self) -> bool:
        """Whether to run the next chunk's query on a second connection while this chunk is
        encoded: where another connection sees what this thread's connection sees, and the
        database does its work outside the interpreter (not SQLite: its engine runs in this
        process, a row at a time between which the reading thread needs the GIL, so the two
        threads would take turns, not overlap)."""
        connection = connections[self.queryset.db]
        return not connection.in_atomic_block and connection.vendor != "sqlite"


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a chunk is read and encoded.

    A chunk makes some hundred thousand container objects (rows, records, lists), none in a
    reference cycle; with the collector on, they set off a collection every few hundred, each
    looking at the young objects, and now and then at every object in the process. After the
    chunk they are freed by reference counting, and the collector runs again as before.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _loads_utc_natively(connection: BaseDatabaseWrapper) -> bool:
    """Whether psycopg's own ``timestamptz`` loader gives what Django's would: on psycopg 3
    with Django and the session both in UTC (Django's loader replaces psycopg's ``tzinfo``
    by ``connection.timezone``, and psycopg's is ``datetime.timezone.utc`` for UTC)."""
    if connection.vendor != "postgresql" or not settings.USE_TZ:
        return False
    if connection.timezone_name != "UTC":
        return False
    raw = connection.connection
    info = getattr(raw, "info", None)  # psycopg 3 only
    return info is not None and info.parameter_status("TimeZone") == "UTC"


def _use_native_timestamptz_loader(cursor: Any) -> None:
    from psycopg.types.datetime import TimestamptzLoader

    cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
