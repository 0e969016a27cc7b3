"""The document reader: records with nested objects and collections, on the generic path.

The export's own query selects every top-level column and every member of the nested
objects (joined, as ``values_list`` joins ``billing_address__city``), chunk by chunk by the
record's key, as the ORM reader does. Then each collection's items of the chunk's records
are read with one query per collection (``WHERE order_id IN (...) ORDER BY order_id, ...``),
and the records are put together: a nested object is a ``Record`` (``None`` when the
relation is empty), a collection ``Items``. A chunk holds its records' items, no more.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from django_report_export.formats.base import ChunkRows, FormatWriter
from django_report_export.formats.documents import Items, Record
from django_report_export.readers.base import _in_zone
from django_report_export.readers.orm import OrmChunkReader


@dataclass(frozen=True)
class Value:
    """A member read from the select item at ``position``."""

    name: str
    position: int


@dataclass(frozen=True)
class Object:
    """A nested object: ``None`` when the select item at ``present`` (its key) is null."""

    name: str
    present: int
    members: tuple[Member, ...]


@dataclass(frozen=True)
class Many:
    """A collection: the items of ``queryset`` whose ``link`` is a record's key, in order.

    ``items`` are what each item's query selects after the link, ``transforms`` the Python
    functions of some of them (by position among ``items``), ``members`` how an item is put
    together from them."""

    name: str
    queryset: QuerySet[Any]
    link: str
    items: tuple[Any, ...]
    members: tuple[Member, ...]
    item: str = "item"
    transforms: Mapping[int, Callable[[Any], Any]] = field(default_factory=dict)


Member = Value | Object | Many


class DocumentReader(OrmChunkReader):
    """The ORM reader's chunks, put together into records with nested entries."""

    shapes = True

    def __init__(
        self,
        queryset: QuerySet[Any],
        fields: list[Any],
        writer: FormatWriter,
        members: Sequence[Member],
        transforms: Mapping[int, Callable[[Any], Any]] | None = None,
        *,
        flat: bool = False,
    ) -> None:
        super().__init__(queryset, fields, writer, transforms)
        self.members = tuple(members)
        #: Rows, not documents: nested members as columns, one row per item of a collection.
        self.flat = flat

    def shape(self, chunk: ChunkRows, keys: list[Any]) -> ChunkRows:
        columns = chunk.columns()
        items = {
            member.name: self.items(member, keys)
            for member in self.members
            if isinstance(member, Many)
        }
        records = [
            tuple(_value(member, columns, index, key, items) for member in self.members)
            for index, key in enumerate(keys)
        ]
        if self.flat:
            rows = [row for record in records for row in _flat_rows(self.members, record)]
            return ChunkRows(rows, sum(map(_width, self.members)))
        return ChunkRows(records, len(self.members))

    def items(self, many: Many, keys: list[Any]) -> dict[Any, Items]:
        """The items of the records ``keys``, by record key: one query."""
        queryset = many.queryset.using(self.queryset.db).filter(**{f"{many.link}__in": keys})
        rows = list(queryset.values_list(many.link, *many.items))
        columns = [list(values) for values in zip(*rows, strict=True)] if rows else []
        for position, transform in many.transforms.items():
            columns[position + 1] = list(map(transform, columns[position + 1]))
        if self.writer.options.timezone != "UTC":
            zone = self.writer.options.zone
            for values in columns[1:]:
                if any(isinstance(value, datetime.datetime) for value in values):
                    values[:] = [_in_zone(value, zone) for value in values]
        grouped: dict[Any, Items] = {}
        children = columns[1:]
        for index, link in enumerate(columns[0] if columns else ()):
            record = Record(
                (member.name, _item_value(member, children, index)) for member in many.members
            )
            group = grouped.get(link)
            if group is None:
                group = grouped[link] = Items(item=many.item)
            group.append(record)
        return grouped


def _value(
    member: Member, columns: list[list[Any]], index: int, key: Any, items: dict[str, Any]
) -> Any:
    if isinstance(member, Value):
        return columns[member.position][index]
    if isinstance(member, Object):
        if columns[member.present][index] is None:
            return None
        return Record((m.name, _value(m, columns, index, key, items)) for m in member.members)
    found = items[member.name].get(key)
    return Items(item=member.item) if found is None else found


def _item_value(member: Member, columns: list[list[Any]], index: int) -> Any:
    if isinstance(member, Value):
        return columns[member.position][index]
    if isinstance(member, Object):
        if columns[member.present][index] is None:
            return None
        return Record((m.name, _item_value(m, columns, index)) for m in member.members)
    raise TypeError("A collection inside a collection is not supported.")  # refused by E037


def _width(member: Member) -> int:
    """How many columns a member takes flattened."""
    if isinstance(member, Value):
        return 1
    return sum(map(_width, member.members))


def _flat_values(member: Member, value: Any) -> list[Any]:
    """A value or a nested object's members, flattened (``None``: as many ``None``)."""
    if isinstance(member, Value):
        return [value]
    if value is None:
        return [None] * _width(member)
    return [v for m in member.members for v in _flat_values(m, value[m.name])]


def _flat_rows(members: Sequence[Member], record: Sequence[Any]) -> list[tuple[Any, ...]]:
    """A record's rows: one per item of its collection (its other columns repeated), or one
    with empty item columns when it has none."""
    rows: list[list[Any]] = [[]]
    for member, value in zip(members, record, strict=True):
        if not isinstance(member, Many):
            values = _flat_values(member, value)
            for row in rows:
                row.extend(values)
            continue
        items = [_flat_values(Object("", 0, member.members), item) for item in value]
        if not items:
            items = [[None] * _width(member)]
        rows = [row + item for row in rows for item in items]
    return [tuple(row) for row in rows]
