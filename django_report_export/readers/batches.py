"""One query's rows, a batch at a time: a collection's items of a chunk, never all held.

A chunk's items of a collection are one query (``WHERE order_id IN (...) ORDER BY order_id,
..., id``), fetched ``size`` rows at a time on a cursor that streams, and converted batch by
batch as ``values_list`` converts them:

* PostgreSQL: a server-side cursor (Django's ``chunked_cursor``) on the export's connection;
* SQLite: the export's connection's own cursor, which steps through the result as it is
  fetched (the other collections' statements are open on the connection meanwhile).

MySQL/MariaDB has no such cursor on one connection: mysqlclient's default cursor makes a
Python row of every row of the result at ``execute``, and its unbuffered cursor allows one
open result per connection, while a chunk's collections are read in step (another connection
would not see the rows of an atomic block). There the batches are queries of their own, each
the next ``size`` rows after the last one's sort key (``after``): as many queries as batches,
one for a chunk of records with fewer items than ``size``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from operator import itemgetter
from typing import Any

from django.db import connections
from django.db.models import Q, QuerySet

from django_report_export.readers.orm import _Query

Columns = list[list[Any]]


def batches(
    queryset: QuerySet[Any], select: Sequence[Any], size: int
) -> Generator[Columns, None, None]:
    """The columns of ``queryset.values_list(*select)``, ``size`` rows at a time, in the
    queryset's order (``order_by`` of field names, the key last)."""
    if connections[queryset.db].vendor == "mysql":
        yield from _keyset_batches(queryset, select, size)
        return
    query = _Query(queryset.values_list(*select))
    if query.empty:
        return
    if query.django_only:  # pragma: no cover - a collection's query has no extra select
        rows = list(query.values)
        if rows:
            yield _columns(rows, len(select), {})
        return
    connection = connections[query.alias]
    cursor = connection.chunked_cursor() if connection.vendor == "postgresql" else None
    with cursor or connection.cursor() as cursor:
        cursor.execute(query.sql, query.params)
        while rows := cursor.fetchmany(size):
            columns = _columns(rows, len(select), query.convert(rows))
            del rows  # neither is held while the next rows are fetched
            yield columns
            del columns


def _keyset_batches(queryset: QuerySet[Any], select: Sequence[Any], size: int) -> Iterator[Columns]:
    names = [str(name) for name in queryset.query.order_by]  # field names (``_Plan``)
    order = [name.removeprefix("-") for name in names]
    descending = [name.startswith("-") for name in names]
    width = len(select)
    rest = queryset
    while True:
        query = _Query(rest.values_list(*select, *order)[:size])
        if query.empty:
            return
        rows, columns = query.fetch()
        if not rows:
            return
        batch = _columns(rows, width + len(order), query.convert(rows, columns))
        del rows, columns  # none is held while the next rows are fetched
        full = len(batch[0]) == size
        last = [column[-1] for column in batch[width:]]
        items = batch[:width]
        del batch
        yield items
        del items
        if not full:
            return
        rest = queryset.filter(_after(order, descending, last))


def _after(order: list[str], descending: list[bool], last: list[Any]) -> Q:
    """The rows after ``last`` in the order ``order`` (MySQL's: ``NULL`` first ascending,
    last descending), one of them differing from it at each field in turn."""
    after = Q(pk__in=[])
    equal = Q()
    for name, desc, value in zip(order, descending, last, strict=True):
        if value is None:
            beyond = Q(pk__in=[]) if desc else Q(**{f"{name}__isnull": False})
            same = Q(**{f"{name}__isnull": True})
        else:
            beyond = Q(**{f"{name}__{'lt' if desc else 'gt'}": value})
            if desc:
                beyond |= Q(**{f"{name}__isnull": True})
            same = Q(**{name: value})
        after |= equal & beyond
        equal &= same
    return after


def _columns(rows: Sequence[Any], width: int, converted: dict[int, list[Any]]) -> Columns:
    """The rows' columns, those in ``converted`` replaced (as ``values_list`` gives them)."""
    return [
        converted[index] if index in converted else list(map(itemgetter(index), rows))
        for index in range(width)
    ]
