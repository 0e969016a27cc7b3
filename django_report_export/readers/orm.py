"""The generic reader: one ``values_list`` query per keyset chunk, encoded by the writer.

It runs the SQL Django compiles for ``values_list(...)[:limit]`` itself and hands the writer
exactly the values ``values_list`` would return, with less work per row:

* the whole chunk is fetched at once (``fetchall``), not 100 rows at a time through Django's
  iterator chain;
* the writer gets the fetched rows with only the converted columns replaced (``ChunkRows``):
  no row is copied, and the key is taken from the exported fields when the primary key is one
  of them (``id``);
* database converters run column by column over the chunk rather than row by row; SQLite's
  (datetimes, decimals, booleans, UUIDs, dates) are computed for a whole column by C-level
  ``map`` calls that give what the converter gives value by value;
* on SQLite, rows are read on a connection of the reader's own without the ``sqlite3``
  module's per-value converters, which are applied column by column instead
  (``readers/sqlite.py``); the writer is told the few types such raw values can have, so
  it need not look at every value to learn them;
* on MySQL/MariaDB, ``DATETIME``, ``DATE`` and ``DECIMAL`` values are fetched as text (the
  driver would call a Python function for each) and parsed a column at a time into the same
  values (``readers/mysql.py``);
* Python's cyclic garbage collector is paused while a chunk is read and encoded (its
  objects hold no reference cycles, and collections set off by their number only cost time);
* on PostgreSQL with Django's connection in UTC, ``timestamptz`` values are loaded by psycopg's
  C loader instead of Django's Python wrapper around it; both return the same aware UTC
  datetimes;
* except on SQLite, the next chunk's query runs on a second connection in a background thread
  while this chunk is encoded, so the database works while Python does (a chunk's query is
  known as soon as the previous chunk's last key is). Not inside a transaction (the second
  connection would not see its rows). SQLite's engine runs inside this process and the
  reading thread needs the GIL for every row, so there the two threads would take turns.

Querysets this cannot run exactly so (``extra(select=...)``, composite keys) go through
Django's own ``values_list`` iteration.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import functools
import gc
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet
from django.db.models.expressions import Col

from django_report_export.formats.base import ChunkRows, FormatWriter
from django_report_export.readers.base import Chunk, ChunkReader
from django_report_export.readers.sqlite import SQLITE_TYPES, Source, SqliteRows

Converter = Callable[[Any, Any, BaseDatabaseWrapper], Any]
Rows = Sequence[Sequence[Any]]
#: A chunk's rows as fetched, and the values standing for some of their columns, by position.
Fetched = tuple[list[Any], dict[int, list[Any]]]
NoneType = type(None)


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
        self._sqlite = SqliteRows(queryset.db)
        weakref.finalize(self, self._prefetcher.close)
        weakref.finalize(self, self._sqlite.close)

    def read(self, after: Any, limit: int, *, first: bool) -> Chunk:
        with _collector_paused():
            return self._read(after, limit, first=first)

    def _read(self, after: Any, limit: int, *, first: bool) -> Chunk:
        query = self._query(after, limit)
        rows, converted, raw_types = self._rows(query, after, limit)
        if len(rows) < limit:
            self.close()  # The export's last chunk.
        if not rows:
            return Chunk(b"", 0, None)
        key = 0 if self.key_index is None else self.key_index
        key_values = converted.get(key)
        last_key = rows[-1][key] if key_values is None else key_values[-1]
        if len(rows) == limit and self._may_prefetch():
            self._prefetcher.start(last_key, limit, self._query(last_key, limit))
        skip = 1 if self.key_index is None else 0
        replaced = {position - skip: values for position, values in converted.items()}
        replaced.pop(-1, None)  # The key that is not exported.
        chunk = ChunkRows(rows, len(self.fields), replaced, skip=skip, raw_types=raw_types)
        return Chunk(self.writer.encode_chunk(chunk, first=first), len(rows), last_key)

    def close(self) -> None:
        """Stop reading ahead and close the connections of the reader's own."""
        self._prefetcher.close()
        self._sqlite.close()

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


def _convert(
    values: list[Any],
    functions: Sequence[Converter],
    expression: Any,
    connection: BaseDatabaseWrapper,
) -> list[Any]:
    """Apply a column's converters in order, as ``SQLCompiler.apply_converters`` does."""
    for function in functions:
        converted = _convert_column(function, values, expression)
        if converted is None:
            converted = [function(value, expression, connection) for value in values]
        values = converted
    return values


def _convert_column(function: Converter, values: list[Any], expression: Any) -> list[Any] | None:
    """What ``function`` gives for each of ``values``, computed for the whole column at once,
    or ``None`` when the column does not go this way.

    Only the converters of Django's SQLite backend (it converts most column types in Python)
    and MySQL/MariaDB backend (booleans, datetimes, UUIDs) are known here; each is done with
    C-level ``map`` calls, for the types of values the driver returns, and gives exactly what
    the converter gives value by value.
    """
    types = set(map(type, values))
    types.discard(NoneType)
    method = getattr(function, "__func__", None)
    if method is not None:
        ops = getattr(function, "__self__", None)
        converted = _sqlite_method_column(method, ops, values, types)
        if converted is None:
            converted = _mysql_method_column(method, ops, values, types)
        return converted
    if types <= {int, float}:
        decimals = _sqlite_decimal_converter(function, types)
        if decimals is not None:
            return decimals(values, expression)
    return None


def _sqlite_method_column(
    method: Any, ops: Any, values: list[Any], types: set[type]
) -> list[Any] | None:
    """``_convert_column`` for the converters that are methods of SQLite's operations."""
    sqlite = _sqlite_operations()
    if sqlite is None:
        return None
    if method is sqlite.convert_datetimefield_value:
        return _sqlite_datetimes(values, types, ops.connection.timezone)
    if method is sqlite.convert_booleanfield_value:
        return list(map(_BOOLEANS.get, values, values))
    if method is sqlite.convert_uuidfield_value and types <= {str}:
        return _present_mapped(uuid.UUID, values)
    if method is sqlite.convert_datefield_value and _all_subclasses(types, datetime.date):
        return values
    if method is sqlite.convert_timefield_value and _all_subclasses(types, datetime.time):
        return values
    return None


def _mysql_method_column(
    method: Any, ops: Any, values: list[Any], types: set[type]
) -> list[Any] | None:
    """``_convert_column`` for the converters that are methods of MySQL's operations
    (MariaDB too): mysqlclient returns booleans as 0 and 1, datetimes naive (in the
    connection's time zone, UTC with ``USE_TZ``) and UUIDs as 32 hex digits."""
    mysql = _backend_operations("django.db.backends.mysql.operations")
    if mysql is None:
        return None
    if method is mysql.convert_booleanfield_value:
        return list(map(_BOOLEANS.get, values, values))
    if method is mysql.convert_datetimefield_value and types <= {datetime.datetime}:
        # make_aware(value, connection.timezone) for each value; it refuses aware ones.
        present = _present(values)
        if set(map(_tzinfo, present)) - {None}:
            return None
        return _made_aware(values, present, ops.connection.timezone)
    if method is mysql.convert_uuidfield_value and types <= {str}:
        return _present_mapped(uuid.UUID, values)
    return None


#: ``bool(value) if value in (1, 0) else value`` as a look-up (equal values hash alike).
_BOOLEANS: dict[Any, bool] = {1: True, 0: False}
_tzinfo = attrgetter("tzinfo")
_combine = datetime.datetime.combine


def _sqlite_datetimes(values: list[Any], types: set[type], tz: Any) -> list[Any] | None:
    """SQLite's ``convert_datetimefield_value`` for a column of ``datetime`` values (the
    ``sqlite3`` module's ``datetime`` converter parsed them).

    Per value, that converter does ``make_aware(value, connection.timezone)`` unless
    ``USE_TZ`` is off or the value is aware, which is ``value.replace(tzinfo=tz)``. When every
    value is naive, ``combine(value.date(), value.time(), tz)`` is the same datetime (``time()``
    keeps ``fold``), made in C.
    """
    if not types <= {datetime.datetime}:
        return None
    present = _present(values)
    if not settings.USE_TZ or not present:
        return values
    if set(map(_tzinfo, present)) != {None}:
        return None
    return _made_aware(values, present, tz)


def _made_aware(values: list[Any], present: list[Any], tz: Any) -> list[Any]:
    """``values`` (``present``: those not ``None``, all naive datetimes) in the time zone
    ``tz``: ``combine(value.date(), value.time(), tz)`` is ``value.replace(tzinfo=tz)``
    (``time()`` keeps ``fold``), made in C."""
    if not present:
        return values
    aware = list(
        map(
            _combine,
            map(datetime.datetime.date, present),
            map(datetime.datetime.time, present),
            repeat(tz),
        )
    )
    return aware if present is values else _with_nones(values, aware)


def _sqlite_decimal_converter(
    function: Converter, types: set[type]
) -> Callable[[list[Any], Any], list[Any]] | None:
    """SQLite's decimal converter over a whole column of ``types`` (``float`` and ``int``
    values), or ``None`` when ``function`` is not that converter.

    The converter is a closure made by ``get_decimalfield_converter``:
    ``create_decimal(value).quantize(quantize_value, context=expression.output_field.context)``
    (``create_decimal(value)`` alone for an expression that is not a column). The same
    functions, taken from the closure, are mapped over the column. Before Django 6.1 the
    closure holds ``create_decimal``; from 6.1 on it holds ``self``, the operations, whose
    ``_create_decimal`` is that function (``_sqlite_create_decimal``).
    """
    if getattr(function, "__module__", None) != "django.db.backends.sqlite3.operations":
        return None
    if not getattr(function, "__qualname__", "").endswith(
        "get_decimalfield_converter.<locals>.converter"
    ):
        return None
    code = getattr(function, "__code__", None)
    closure = getattr(function, "__closure__", None) or ()
    if code is None or len(code.co_freevars) != len(closure):
        return None
    cells = dict(zip(code.co_freevars, (cell.cell_contents for cell in closure), strict=True))
    if set(cells) - {"create_decimal", "quantize_value", "self"}:
        return None
    create_decimal = cells.get("create_decimal")
    if create_decimal is None and "self" in cells:
        create_decimal = _sqlite_create_decimal(cells["self"], types)
    if create_decimal is None:
        return None
    quantize_value = cells.get("quantize_value")

    def decimals(numbers: list[Any], expression: Any) -> list[Any]:
        converted: Any = map(create_decimal, numbers)
        if quantize_value is not None:
            context = expression.output_field.context
            converted = map(
                decimal.Decimal.quantize,
                converted,
                repeat(quantize_value),
                repeat(None),
                repeat(context),
            )
        return list(converted)

    def convert(values: list[Any], expression: Any) -> list[Any]:
        present = _present(values)
        distinct = set(present)
        # Amounts repeat: convert each once. Equal numbers give equal decimals, except
        # 0.0 and -0.0 ("0.00", "-0.00"), so not with a zero.
        if len(distinct) * 2 <= len(present) and 0 not in distinct:
            numbers = list(distinct)
            table = dict(zip(numbers, decimals(numbers, expression), strict=True))
            converted = list(map(table.__getitem__, present))
        else:
            converted = decimals(present, expression)
        return converted if present is values else _with_nones(values, converted)

    return convert


#: What Django 6.1's ``DatabaseOperations._create_decimal`` gives for a value of each type:
#: ``Decimal(value)`` for an ``int`` (and a ``str``), else the ``float`` rounded to 15 digits.
_CREATE_DECIMAL: dict[type, Callable[[Any], decimal.Decimal]] = {
    int: decimal.Decimal,
    float: decimal.Context(prec=15).create_decimal_from_float,
}
#: Values on which each function of ``_CREATE_DECIMAL`` is checked against Django's own.
_DECIMAL_PROBES: dict[type, tuple[Any, ...]] = {
    int: (0, -7, 2**60 + 1),
    float: (2.675, -0.0, 1e-7, 0.1 + 0.2, 123456789.125, 2**52 + 0.5),
}


def _sqlite_create_decimal(ops: Any, types: set[type]) -> Callable[[Any], Any] | None:
    """The function that makes Django 6.1's SQLite converter's decimals from a column of
    ``types``: a C-level one when the column has one type and it gives what
    ``ops._create_decimal`` gives (checked once on a few values), else that method itself."""
    sqlite = _sqlite_operations()
    method = getattr(type(ops), "_create_decimal", None)
    if sqlite is None or not isinstance(ops, sqlite) or method is None:
        return None
    if len(types) == 1:
        (kind,) = types
        fast = _CREATE_DECIMAL.get(kind)
        if fast is not None and _same_decimals(method, kind):
            return fast
    return method


@functools.cache
def _same_decimals(method: Callable[[Any], Any], kind: type) -> bool:
    fast = _CREATE_DECIMAL[kind]
    return all(str(fast(value)) == str(method(value)) for value in _DECIMAL_PROBES[kind])


def _present(values: list[Any]) -> list[Any]:
    """``values`` without its ``None``s (``values`` itself when it has none)."""
    if None not in values:
        return values
    return [value for value in values if value is not None]


def _with_nones(values: list[Any], present: list[Any]) -> list[Any]:
    """``present`` (the converted values that are not ``None``) with the ``None``s of
    ``values`` back in their places."""
    replacements = iter(present)
    return [None if value is None else next(replacements) for value in values]


def _present_mapped(function: Callable[[Any], Any], values: list[Any]) -> list[Any]:
    present = _present(values)
    converted = list(map(function, present))
    return converted if present is values else _with_nones(values, converted)


def _all_subclasses(types: set[type], base: type) -> bool:
    return all(issubclass(cls, base) for cls in types)


def _sqlite_operations() -> Any:
    """Django's SQLite ``DatabaseOperations`` class, or ``None`` while the SQLite backend is
    not loaded (then no converter can be one of its methods)."""
    return _backend_operations("django.db.backends.sqlite3.operations")


def _backend_operations(module_name: str) -> Any:
    """A backend's ``DatabaseOperations`` class, or ``None`` while it is not loaded."""
    return getattr(sys.modules.get(module_name), "DatabaseOperations", None)


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
