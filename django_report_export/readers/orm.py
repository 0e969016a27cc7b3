"""The generic reader: one ``values_list`` query per keyset chunk, encoded by the writer.

It runs the SQL Django compiles for ``values_list(...)[:limit]`` itself and hands the writer
exactly the values ``values_list`` would return, with less work per row:

* the whole chunk is fetched at once (``fetchall``), not 100 rows at a time through Django's
  iterator chain;
* the key is taken from the exported fields when the primary key is one of them (``id``), so
  rows need no copy without their first value;
* database converters (SQLite's datetimes, decimals, booleans...) run column by column over
  the chunk rather than row by row;
* on PostgreSQL with Django's connection in UTC, ``timestamptz`` values are loaded by psycopg's
  C loader instead of Django's Python wrapper around it; both return the same aware UTC
  datetimes;
* the next chunk's query runs on a second connection in a background thread while this chunk
  is encoded, so the database works while Python does (a chunk's query is known as soon as
  the previous chunk's last key is). Not inside a transaction (the second connection would not
  see its rows) nor on an in-memory SQLite database.

Querysets this cannot run exactly so (``extra(select=...)``, composite keys) go through
Django's own ``values_list`` iteration.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet

from django_report_export.formats.base import FormatWriter
from django_report_export.readers.base import Chunk, ChunkReader

Converter = Callable[[Any, Any, BaseDatabaseWrapper], Any]
Rows = Sequence[Sequence[Any]]


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

    def fetch(self) -> list[Any]:
        """The raw rows, on the calling thread's connection to the database."""
        connection = connections[self.alias]
        with connection.cursor() as cursor:
            if _loads_utc_natively(connection):
                _use_native_timestamptz_loader(cursor.cursor)
            cursor.execute(self.sql, self.params)
            return list(cursor.fetchall())

    def convert(self, rows: list[Any]) -> Rows:
        """``rows`` as ``values_list`` returns them: each column through its converters."""
        if not rows or not self.converters:
            return rows
        connection = connections[self.alias]
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        for position, (functions, expression) in self.converters.items():
            columns[position] = _convert(columns[position], functions, expression, connection)
        return list(zip(*columns, strict=True))


class _Prefetcher:
    """A thread with its own database connection that runs the next chunk's query."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.executor: ThreadPoolExecutor | None = None
        self.pending: tuple[Any, int, Future[list[Any]]] | None = None
        self.lock = threading.Lock()

    def start(self, after: Any, limit: int, query: _Query) -> None:
        with self.lock:
            if self.executor is None:
                self.executor = ThreadPoolExecutor(1, thread_name_prefix="report-export-read")
            self.pending = (after, limit, self.executor.submit(query.fetch))

    def take(self, after: Any, limit: int) -> Future[list[Any]] | None:
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
                executor.submit(connections[self.alias].close)
            executor.shutdown(wait=False, cancel_futures=False)


class OrmChunkReader(ChunkReader):
    """The generic reader: ``values_list`` of one keyset chunk, encoded by the writer."""

    def __init__(self, queryset: QuerySet[Any], fields: list[str], writer: FormatWriter) -> None:
        super().__init__(queryset, fields, writer)
        pk = queryset.model._meta.pk
        key_names = {"pk", pk.name, pk.attname} if pk is not None else {"pk"}
        #: Position of the primary key among the exported fields, if it is one of them.
        self.key_index = next(
            (index for index, name in enumerate(fields) if name in key_names), None
        )
        self.select = list(fields) if self.key_index is not None else ["pk", *fields]
        self._prefetcher = _Prefetcher(queryset.db)
        weakref.finalize(self, self._prefetcher.close)

    def read(self, after: Any, limit: int, *, first: bool) -> Chunk:
        query = self._query(after, limit)
        rows = self._rows(query, after, limit)
        if len(rows) < limit:
            self.close()  # The export's last chunk.
        if not rows:
            return Chunk(b"", 0, None)
        last_key = rows[-1][0 if self.key_index is None else self.key_index]
        if len(rows) == limit and self._may_prefetch():
            self._prefetcher.start(last_key, limit, self._query(last_key, limit))
        if self.key_index is None:
            rows = [row[1:] for row in rows]
        data = self.writer.encode_rows(rows, first=first)
        return Chunk(data, len(rows), last_key)

    def close(self) -> None:
        """Stop reading ahead and close the reading thread's connection."""
        self._prefetcher.close()

    def _query(self, after: Any, limit: int) -> _Query:
        return _Query(self.after(after).values_list(*self.select)[:limit])

    def _rows(self, query: _Query, after: Any, limit: int) -> Rows:
        """The chunk's rows as ``list(values)`` would give them."""
        if query.empty:
            return []
        if query.django_only:
            return list(query.values)
        future = self._prefetcher.take(after, limit)
        if future is not None:
            try:
                raw = future.result()
            except BaseException:
                self.close()
                raise
        else:
            raw = query.fetch()
        return query.convert(raw)

    def _may_prefetch(self) -> bool:
        """Whether another connection sees what this thread's connection sees."""
        connection = connections[self.queryset.db]
        if connection.in_atomic_block:
            return False
        if connection.vendor == "sqlite":
            name = str(connection.settings_dict.get("NAME") or "")
            return not (name in ("", ":memory:") or "mode=memory" in name)
        return True


def _convert(
    column: Sequence[Any],
    functions: Sequence[Converter],
    expression: Any,
    connection: BaseDatabaseWrapper,
) -> list[Any]:
    """Apply a column's converters in order, as ``SQLCompiler.apply_converters`` does."""
    values = list(column)
    for function in functions:
        aware = _make_aware_column(function, values, connection)
        if aware is not None:
            values = aware
            continue
        values = [function(value, expression, connection) for value in values]
    return values


def _make_aware_column(
    function: Converter, values: list[Any], connection: BaseDatabaseWrapper
) -> list[Any] | None:
    """SQLite's ``convert_datetimefield_value`` over a whole column, or ``None`` when the
    column does not go this way.

    For a column of ``datetime`` values (SQLite's ``datetime`` type converter parsed them),
    that converter does, per value: ``make_aware(value, connection.timezone)`` unless
    ``USE_TZ`` is off or the value is aware (``utcoffset()`` is not ``None``), which is
    ``value.replace(tzinfo=connection.timezone)``. The same, without its five calls a value.
    """
    if connection.vendor != "sqlite" or not settings.USE_TZ:
        return None
    if getattr(function, "__func__", None) is not _sqlite_datetime_converter():
        return None
    if not set(map(type, values)) <= {datetime.datetime, type(None)}:
        return None
    tz = connection.timezone
    return [
        value.replace(tzinfo=tz) if value is not None and value.utcoffset() is None else value
        for value in values
    ]


def _sqlite_datetime_converter() -> Any:
    from django.db.backends.sqlite3.operations import DatabaseOperations

    return DatabaseOperations.convert_datetimefield_value


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
