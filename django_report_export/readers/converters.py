"""Django's database converters applied a whole column at a time.

``_convert`` gives, for a column of a fetched chunk, what Django's converters give value by
value: the converters of the SQLite backend (datetimes, decimals, booleans, UUIDs, dates,
times) and of the MySQL/MariaDB backend (booleans, datetimes, UUIDs) are recognised and
computed with C-level ``map`` calls; any other converter runs per value.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import sys
import uuid
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper

Converter = Callable[[Any, Any, BaseDatabaseWrapper], Any]
NoneType = type(None)


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
    method: Callable[[Any], Any] | None = getattr(type(ops), "_create_decimal", None)
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
