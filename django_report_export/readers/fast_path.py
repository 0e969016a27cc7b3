"""Whether the PostgreSQL fast path takes an export: ``postgres_reader`` gives its reader, or
``None`` when it could not write the same bytes as the ORM reader.

It does not for a column of a type ``postgres_records`` cannot format exactly, a primary key
that is neither an integer nor a UUID, a queryset whose SQL cannot be wrapped safely
(``distinct()``, aggregates, ``extra()``, unions), a project's own writer, a connection inside
a transaction, one whose datetimes Django does not return in UTC, or datetimes asked for in
another time zone (the ``timezone`` option); for xlsx, a server before PostgreSQL 14 or one
that does not write floats exactly (``writes_serials``). Every CSV option is written in SQL
too (``postgres_records.csv_record``) or, a byte-order mark and the header row, by the writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet

from django_report_export.formats.base import FormatWriter
from django_report_export.formats.csv import CSVWriter
from django_report_export.formats.json import JSONWriter
from django_report_export.formats.jsonl import JSONLinesWriter
from django_report_export.formats.xlsx import XLSXWriter
from django_report_export.formats.xml import XMLWriter
from django_report_export.readers.postgres import PostgresChunkReader
from django_report_export.readers.postgres_records import INT_KEY, KINDS, UUID_KEY, KeyType
from django_report_export.readers.postgres_xlsx import PostgresXLSXReader, writes_serials


def _is_utc(connection: BaseDatabaseWrapper) -> bool:
    """Whether Django returns this connection's ``timestamptz`` values in UTC (aware values
    whose ``isoformat()`` ends ``+00:00``)."""
    return bool(settings.USE_TZ) and connection.timezone_name == "UTC"


def plain_rows(queryset: QuerySet[Any]) -> bool:
    """Whether the queryset's SQL is one row per object, whatever its order."""
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
    )


def _wrappable(queryset: QuerySet[Any]) -> bool:
    """Whether the queryset's SQL is one row per object, ordered by the primary key."""
    order = tuple(queryset.query.order_by)
    return plain_rows(queryset) and order in (("pk",), (queryset.model._meta.pk.name,))


#: An expression's own converter (``convert_value``) for these output fields, and the kind
#: of column psycopg gives such values as already: the converter changes nothing.
_NUMBER_KINDS = {
    "IntegerField": "int",
    "BigIntegerField": "int",
    "SmallIntegerField": "int",
    "PositiveIntegerField": "int",
    "PositiveBigIntegerField": "int",
    "PositiveSmallIntegerField": "int",
    "DecimalField": "decimal",
}


def _same_value(converter: tuple[list[Any], Any], kind: str | None) -> bool:
    """Whether a column's converters give back the values psycopg fetched: only an
    expression's number cast (``int()`` of an int, ``Decimal()`` of a ``Decimal``) does, as
    a computed column (``F("a") + F("b")``, ``Subquery`` of a ``Sum``) has."""
    functions, expression = converter
    internal = expression.output_field.get_internal_type()
    return (
        kind is not None
        and _NUMBER_KINDS.get(internal) == kind
        and functions == [expression.convert_value]
    )


def _uses_psycopg3() -> bool:
    try:
        from django.db.backends.postgresql.psycopg_any import is_psycopg3
    except ImportError:  # pragma: no cover - no PostgreSQL driver at all
        return False
    return bool(is_psycopg3)


#: The writers whose exports the fast path takes by default: all the built-in ones.
FAST_FORMATS: tuple[type[FormatWriter], ...] = (
    CSVWriter,
    JSONWriter,
    JSONLinesWriter,
    XMLWriter,
    XLSXWriter,
)
ALL_FORMATS = FAST_FORMATS


def takes(queryset: QuerySet[Any]) -> bool:
    """Whether the fast path can read ``queryset`` at all: a PostgreSQL connection through
    psycopg 3, outside a transaction, in UTF-8 with standard strings; SQL it can wrap."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql" or not _uses_psycopg3():
        return False
    if not _wrappable(queryset) or connection.in_atomic_block:
        # In a transaction, rows it wrote are not visible to the reader's own connection.
        return False
    with connection.cursor() as cursor:
        info = cursor.cursor.connection.info
        return bool(
            info.encoding == "utf-8"
            and info.parameter_status("standard_conforming_strings") == "on"
        )


def column_kinds(queryset: QuerySet[Any], fields: Sequence[Any]) -> list[str | None] | None:
    """The kind of each column of ``queryset.values_list(*fields)`` as ``postgres_records``
    formats it, ``None`` for one it cannot format exactly (a type it does not know, a value
    Django changes in Python); ``None`` when no row can match (the generic reader writes the
    empty export)."""
    probe = queryset.values_list(*fields)
    compiler = probe.query.get_compiler(using=queryset.db)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        return None
    converters = compiler.get_converters([expression for expression, _, _ in compiler.select])
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"SELECT * FROM ({sql}) t LIMIT 0", params)
        oids = [column.type_code for column in cursor.description]
    if len(oids) != len(fields):
        return None
    kinds: list[str | None] = [KINDS.get(oid) for oid in oids]
    for position, converter in converters.items():
        if not _same_value(converter, kinds[position]):
            kinds[position] = None  # Django changes the value in Python (a from_db_value).
    return kinds


def key_type(kind: str | None) -> KeyType | None:
    """The key type of a primary key of ``kind``, ``None`` for one the fast path does not take."""
    return {"int": INT_KEY, "uuid": UUID_KEY}.get(kind or "")


def datetimes_as_written(
    queryset: QuerySet[Any], kinds: Sequence[str | None], writer: FormatWriter
) -> bool:
    """Whether the datetimes among ``kinds`` are written as the fast path writes them: in UTC,
    as Django returns them from this connection, and asked for in UTC."""
    if "datetime" not in kinds:
        return True
    return _is_utc(connections[queryset.db]) and writer.options.timezone == "UTC"


def postgres_reader(
    queryset: QuerySet[Any],
    fields: Sequence[str],
    writer: FormatWriter,
    formats: Sequence[type[FormatWriter]] = FAST_FORMATS,
) -> PostgresChunkReader | None:
    """The fast reader for this export, or ``None`` when it cannot write the same bytes
    (or, for a writer not in ``formats``, would not write them faster)."""
    writer_class = type(writer)
    if writer_class not in formats or writer_class not in ALL_FORMATS or not fields:
        return None
    if issubclass(writer_class, JSONWriter) and len(set(writer.columns)) != len(writer.columns):
        return None  # Equal keys collapse into one in the Python writer.
    if not takes(queryset):
        return None
    if writer_class is XLSXWriter:
        with connections[queryset.db].cursor() as cursor:
            if not writes_serials(cursor.cursor):
                return None
    kinds = column_kinds(queryset, ["pk", *fields])
    if kinds is None:
        return None
    key = key_type(kinds[0])
    if key is None or None in kinds or not datetimes_as_written(queryset, kinds, writer):
        return None
    reader_class = PostgresXLSXReader if writer_class is XLSXWriter else PostgresChunkReader
    return reader_class(queryset, fields, writer, kinds[1:], key)  # type: ignore[arg-type]
