"""SQLite rows for the generic reader without the ``sqlite3`` module's per-value converters.

Django opens SQLite connections with ``detect_types``: the ``sqlite3`` module then calls a
Python converter for every value of a column whose declared type has one registered
(Django's ``datetime``, ``date``, ``time``, ``bool``), which is about a fifth of fetching a
chunk. ``SqliteRows`` reads on a connection of its own that has no converters and applies
them itself, a column at a time, giving exactly the values Django's connection gives:

* a result column's converter is the one registered for its table column's declared type
  (``PRAGMA table_info``), up to the first blank or ``(``, in capitals, as the ``sqlite3``
  module looks it up; it is called with the value's bytes (a text's UTF-8, an integer's
  digits, a blob), never with ``NULL``;
* texts under Django's ``datetime`` and ``date`` converters are parsed with
  ``fromisoformat``, which is what ``parse_datetime`` and ``parse_date`` try first; when one
  of a column's texts is not in that form, the column goes through the converter itself.

A query whose columns are not all table columns, a column name holding ``[`` (the module
reads a converter name there), a real number in a column with a converter (its bytes would be
SQLite's text of it), or an error, sends the chunk back to Django's connection. The
connection of its own sees what is committed, so it is not used inside a transaction, nor for
an in-memory database (another connection would see another database).
"""

from __future__ import annotations

import contextlib
import datetime
import sqlite3
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from django.db import connections

Converter = Callable[[bytes], Any]
#: The types of the values the ``sqlite3`` module returns without converters.
SQLITE_TYPES = frozenset({type(None), int, float, str, bytes})
#: A result column's table and column name.
Source = tuple[str, str]
NoneType = type(None)


class SqliteRows:
    """Reads a chunk's rows on a SQLite connection of its own, converted column by column."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._connection: sqlite3.Connection | None = None
        self._declared: dict[str, dict[str, str]] = {}

    def usable(self) -> bool:
        connection = connections[self.alias]
        if connection.vendor != "sqlite" or connection.in_atomic_block:
            return False
        return not connection.is_in_memory_db()  # type: ignore[attr-defined]

    def fetch(
        self, sql: str, params: Sequence[Any], sources: Sequence[Source]
    ) -> tuple[list[Any], dict[int, list[Any]]] | None:
        """The rows, and the converted values of the columns that have a converter (by
        position), or ``None`` when the chunk must be read on Django's connection."""
        try:
            converters = self._converters(sources)
            if converters is None:
                return None
            rows = self._execute(sql, params)
        except sqlite3.Error:
            self.close()
            return None
        if rows is None:
            return None
        converted = {}
        for position, converter in converters.items():
            values = _convert(list(map(itemgetter(position), rows)), converter)
            if values is None:
                return None
            converted[position] = values
        return rows, converted

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            wrapper = connections[self.alias]
            params = {**wrapper.get_connection_params(), "detect_types": 0}
            connection = wrapper.get_new_connection(params)
            connection.isolation_level = None  # Autocommit, as Django's.
            self._connection = connection
        return self._connection

    def _execute(self, sql: str, params: Sequence[Any]) -> list[Any] | None:
        from django.db.backends.sqlite3.base import SQLiteCursorWrapper

        cursor = self._connect().cursor(factory=SQLiteCursorWrapper)
        try:
            cursor.execute(sql, params)
            if any("[" in column[0] for column in cursor.description or ()):
                return None
            return cursor.fetchall()
        finally:
            cursor.close()

    def _converters(self, sources: Sequence[Source]) -> dict[int, Converter] | None:
        """The ``sqlite3`` converter of each result column that has one, by position."""
        converters = {}
        for position, (table, column) in enumerate(sources):
            declared = self._declared_types(table).get(column)
            if declared is None:
                return None
            name = declared.replace("(", " ").split(" ", 1)[0].upper()
            converter = sqlite3.converters.get(name)
            if converter is not None:
                converters[position] = converter
        return converters

    def _declared_types(self, table: str) -> dict[str, str]:
        declared = self._declared.get(table)
        if declared is None:
            quoted = connections[self.alias].ops.quote_name(table)
            rows = self._connect().execute(f"PRAGMA table_info({quoted})").fetchall()
            declared = {row[1]: row[2] for row in rows}
            self._declared[table] = declared
        return declared


def _convert(values: list[Any], converter: Converter) -> list[Any] | None:
    """What the ``sqlite3`` module gives for each of a column's ``values`` with
    ``converter``, or ``None`` when that cannot be known here."""
    present = [value for value in values if value is not None] if None in values else values
    types = set(map(type, present))
    if not types:
        return values
    if types == {str}:
        converted = _parse_texts(present, converter)
    elif types <= {str, int, bytes}:
        converted = [converter(_value_bytes(value)) for value in present]
    else:
        return None  # A real number's bytes would be SQLite's text of it.
    if present is values:
        return converted
    replacements = iter(converted)
    return [None if value is None else next(replacements) for value in values]


def _parse_texts(texts: list[str], converter: Converter) -> list[Any]:
    parse = _iso_parser(converter)
    if parse is not None:
        try:
            return list(map(parse, texts))
        except ValueError:
            pass
    return list(map(converter, map(str.encode, texts)))


def _value_bytes(value: str | int | bytes) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int):
        return b"%d" % value
    return value


def _iso_parser(converter: Converter) -> Callable[[str], Any] | None:
    """``fromisoformat`` when ``converter`` is Django's ``decoder(parse_datetime)`` or
    ``decoder(parse_date)`` (each tries ``fromisoformat`` before anything else)."""
    from django.db.backends.sqlite3 import base
    from django.utils.dateparse import parse_date, parse_datetime

    closure = getattr(converter, "__closure__", None)
    if getattr(converter, "__code__", None) is not base.decoder(str).__code__ or not closure:
        return None
    function = closure[0].cell_contents
    if function is parse_datetime:
        return datetime.datetime.fromisoformat
    if function is parse_date:
        return datetime.date.fromisoformat
    return None
