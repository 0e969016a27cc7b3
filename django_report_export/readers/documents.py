"""The document reader: records with nested objects and collections, on the generic path.

The export's own query selects every top-level column and every member of the nested
objects (joined, as ``values_list`` joins ``billing_address__city``), chunk by chunk by the
record's key, as the ORM reader does. Then each collection's items of the chunk's records
are read with one query per collection (``WHERE order_id IN (...) ORDER BY order_id, ...``),
fetched a batch at a time (``readers/batches.py``), all collections in step, record by
record; a nested object is a ``Record`` (``None`` when the relation is empty), a collection
``Items``. The records are encoded some at a time as their items come; a record with more
than ``ITEMS_BATCH`` items in a collection is encoded with a ``Gap`` there, the items written
into it in batches (``formats/documents.py``). So a chunk holds its records and a batch of
items of each collection, however many items a record has; and its bytes are made as they
are written (``Chunk.more``), when the run has decided to write the chunk, whole.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from django_report_export.formats.base import ChunkRows, FormatWriter
from django_report_export.formats.documents import Gap, Items, Record, document_pieces
from django_report_export.readers.base import _in_zone
from django_report_export.readers.batches import batches
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


#: How many items of a collection are held at once (and how many records' items the
#: writer encodes in one go): a record with more has its items written in batches.
ITEMS_BATCH = 1_000


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

    def shaped(self, chunk: ChunkRows, keys: list[Any], *, first: bool) -> Iterator[bytes]:
        """The chunk's records, encoded some at a time: those whose items add up to about
        ``ITEMS_BATCH`` together, a record with more alone, its items in batches."""
        columns = chunk.columns()
        streams = [
            _Stream(self, member, keys) for member in self.members if isinstance(member, Many)
        ]
        try:
            records: list[tuple[Any, ...]] = []
            held = 0
            for index, key in enumerate(keys):
                items: dict[str, Items | Gap] = {}
                long: list[tuple[_Stream, Items]] = []
                for stream in streams:
                    taken, more = stream.take(key)
                    items[stream.many.name] = Gap(stream.many.item) if more else taken
                    held += len(taken)
                    if more:
                        long.append((stream, taken))
                record = tuple(_value(member, columns, index, items) for member in self.members)
                if not long:
                    records.append(record)
                    if held < ITEMS_BATCH:
                        continue
                if records:
                    yield self.encode(records, first=first)
                    first = False
                if long:
                    yield from self.encode_long(record, key, long, first=first)
                    first = False
                records, held = [], 0
            if records:
                yield self.encode(records, first=first)
        finally:
            for stream in streams:
                stream.close()

    def encode(self, records: list[tuple[Any, ...]], *, first: bool) -> bytes:
        if self.flat:
            rows = [row for record in records for row in _flat_rows(self.members, record)]
            return self.writer.encode_chunk(
                ChunkRows(rows, sum(map(_width, self.members))), first=first
            )
        return self.writer.encode_chunk(ChunkRows(records, len(self.members)), first=first)

    def encode_long(
        self, record: tuple[Any, ...], key: Any, long: list[tuple[_Stream, Items]], *, first: bool
    ) -> Iterator[bytes]:
        """A record with a ``Gap`` for each of its ``long`` collections, their items read and
        written in batches after the ``ITEMS_BATCH`` already taken."""
        if self.flat:
            # csv flattens one collection only (E038): its rows, a batch of items at a time.
            ((stream, taken),) = long
            position = self.members.index(stream.many)
            while taken:
                filled = (*record[:position], taken, *record[position + 1 :])
                yield self.encode([filled], first=first)
                first = False
                taken = stream.take(key)[0]
            return
        writer: Any = self.writer
        encoded = writer.encode_chunk(ChunkRows([record], len(self.members)), first=first)
        yield from document_pieces(
            writer, encoded, [_taken_then_rest(stream, key, taken) for stream, taken in long]
        )


class _Stream:
    """One collection's items of a chunk's records, in the records' order, fetched a batch
    at a time (``readers/batches.py``) and taken record by record."""

    def __init__(self, reader: DocumentReader, many: Many, keys: list[Any]) -> None:
        self.many = many
        self.zone = None if reader.writer.options.timezone == "UTC" else reader.writer.options.zone
        queryset = many.queryset.using(reader.queryset.db).filter(**{f"{many.link}__in": keys})
        self.batches = batches(queryset, (many.link, *many.items), ITEMS_BATCH)
        self.links: list[Any] = []
        self.records: list[Record] = []
        self.position = 0

    def take(self, key: Any) -> tuple[Items, bool]:
        """The next at most ``ITEMS_BATCH`` items of the record ``key``, and whether it has
        more."""
        taken = Items(item=self.many.item)
        while len(taken) < ITEMS_BATCH and self._next_link() == key:
            taken.append(self.records[self.position])
            self.position += 1
        return taken, len(taken) == ITEMS_BATCH and self._next_link() == key

    def _next_link(self) -> Any:
        """The link of the next item not taken (``_END`` after the last)."""
        if self.position == len(self.links):
            # Those taken are not held while the next are fetched.
            self.links, self.records, self.position = [], [], 0
            columns = next(self.batches, None)
            if columns is None:
                return _END
            self.links, self.records = columns[0], self._records(columns[1:])
        return self.links[self.position]

    def _records(self, columns: list[list[Any]]) -> list[Record]:
        for position, transform in self.many.transforms.items():
            columns[position] = list(map(transform, columns[position]))
        if self.zone is not None:
            for values in columns:
                if any(isinstance(value, datetime.datetime) for value in values):
                    values[:] = [_in_zone(value, self.zone) for value in values]
        members = self.many.members
        return [
            Record((member.name, _item_value(member, columns, index)) for member in members)
            for index in range(len(columns[0]) if columns else 0)
        ]

    def close(self) -> None:
        """Close the query's cursor, should the chunk not have been taken to its end."""
        self.batches.close()


#: Stands for the link after the last item: equal to no record's key.
_END = object()


def _taken_then_rest(stream: _Stream, key: Any, taken: Items) -> Iterator[Items]:
    yield taken
    while taken := stream.take(key)[0]:
        yield taken


def _value(member: Member, columns: list[list[Any]], index: int, items: dict[str, Any]) -> Any:
    if isinstance(member, Value):
        return columns[member.position][index]
    if isinstance(member, Object):
        if columns[member.present][index] is None:
            return None
        return Record((m.name, _value(m, columns, index, items)) for m in member.members)
    return items[member.name]


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
