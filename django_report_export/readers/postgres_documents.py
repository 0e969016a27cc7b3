"""The PostgreSQL fast path for documents: the database builds each record's JSON or XML,
nested objects and collections included.

The export's own query (``t``) selects the top-level columns and the members of its nested
objects, joined, as on the generic path. Each collection is one aggregate joined to each
record: the ``string_agg`` of its items' texts, in the collection's order (then key). Where
the items' link is indexed the aggregate is a ``LATERAL`` one over the record's own items (an
index look-up, evaluated once per record); otherwise it is grouped by the link over the
items whose link lies in the segment's key range, and joined by key: a plan every parallel
process of the segment runs in full, so it is kept for links without an index, where a
look-up per record would scan the table. Every value is formatted by ``postgres_records``'
SQL, exactly as the writers write what the generic reader hands them: a nested object whose
key is ``NULL`` is ``null`` (left out in XML), a record without items ``[]`` (an empty
element). Chunks, ``COPY``, pause and resume are ``PostgresChunkReader``'s.
``postgres_document_reader`` decides which documents it takes; the others take
``readers.documents.DocumentReader``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from django.db import connections
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from django_report_export.formats.base import FormatWriter
from django_report_export.formats.json import JSONWriter
from django_report_export.formats.jsonl import JSONLinesWriter
from django_report_export.formats.xml import XMLWriter, xml_name
from django_report_export.readers.documents import Many, Member, Object, Value
from django_report_export.readers.fast_path import (
    column_kinds,
    datetimes_as_written,
    key_type,
    plain_rows,
    takes,
)
from django_report_export.readers.postgres import PostgresChunkReader, StreamPlan
from django_report_export.readers.postgres_records import (
    KeyType,
    fix_json,
    fix_xml,
    json_value,
    literal,
    xml_element,
)
from django_report_export.registry import resolve_field_path

#: The writers whose documents the fast path takes (csv flattens documents: generic).
DOCUMENT_FORMATS = (JSONWriter, JSONLinesWriter, XMLWriter)

#: Documents per piece of a chunk (``StreamPlan.piece_rows``): an order with its lines,
#: payments and addresses is one to two kilobytes, so a piece is some hundred kilobytes.
DOCUMENT_PIECE_ROWS = 100

#: SQL of the column at a position of a query's select items.
ColumnSql = Callable[[int], str]


@dataclass(frozen=True)
class _Collection:
    """One collection's items as an aggregate over ``s(k, o0..., c0...)``: ``k`` the link,
    ``o`` the order's columns, ``c`` the items' select items."""

    queryset: QuerySet[Any]
    link: str
    fields: tuple[Any, ...]
    names: str
    #: SQL of one item's text, of the aggregate's ``ORDER BY``, and of what joins two items.
    item: str
    order: str
    separator: str
    #: Whether an index leads with the link's column: the items are then looked up per record.
    indexed: bool

    def join(self, name: str, alias: str, after: Any, upper: Any) -> tuple[str, tuple[Any, ...]]:
        """The ``LEFT JOIN`` of the items of the records of the key range ``(after, upper]``
        as ``name``, their texts joined in ``name.a`` (``NULL`` for a record without items)."""
        aggregate = f"string_agg({self.item}, {self.separator} ORDER BY {self.order})"
        if self.indexed:
            queryset = self.queryset.filter(**{self.link: RawSQL("t.c0", ())})
            sql, params = self._values_sql(queryset, alias)
            lateral = f"SELECT {aggregate} FROM ({sql}) s({self.names})"
            return f"LEFT JOIN LATERAL ({lateral}) {name}(a) ON true", params
        queryset = self.queryset.filter(**{f"{self.link}__lte": upper})
        if after is not None:
            queryset = queryset.filter(**{f"{self.link}__gt": after})
        sql, params = self._values_sql(queryset, alias)
        grouped = f"SELECT s.k, {aggregate} FROM ({sql}) s({self.names}) GROUP BY s.k"
        return f"LEFT JOIN ({grouped}) {name}(k, a) ON {name}.k = t.c0", params

    def _values_sql(self, queryset: QuerySet[Any], alias: str) -> tuple[str, tuple[Any, ...]]:
        values = queryset.values_list(*self.fields)
        sql, params = values.query.get_compiler(using=alias).as_sql()
        return sql, tuple(params)


@dataclass(frozen=True)
class _DocumentPlan(StreamPlan):
    """The stream's plan, the records' rows joined to each collection's aggregate
    (``g0``, ``g1``... in the order of the collections, the items' texts in ``a``)."""

    collections: tuple[_Collection, ...] = ()

    def source(self, after: Any, upper: Any) -> tuple[str, tuple[Any, ...]]:
        source, params = super().source(after, upper)
        parts = [source]
        for index, collection in enumerate(self.collections):
            join, more = collection.join(f"g{index}", self.alias, after, upper)
            parts.append(join)
            params += more
        return " ".join(parts), params


class PostgresDocumentReader(PostgresChunkReader):
    """Documents built by PostgreSQL, streamed as ``PostgresChunkReader`` streams records."""

    def __init__(
        self,
        queryset: QuerySet[Any],
        fields: Sequence[Any],
        writer: FormatWriter,
        kinds: Sequence[str],
        key: KeyType,
        members: Sequence[Member],
        collections: Mapping[str, _Collection],
    ) -> None:
        self.members = tuple(members)
        #: The SQL of each collection's items' texts, by the collection's name.
        self.aggregates = {name: f"g{index}.a" for index, name in enumerate(collections)}
        super().__init__(queryset, fields, writer, kinds, key)
        plan = {f.name: getattr(self.plan, f.name) for f in dataclasses.fields(self.plan)}
        plan["piece_rows"] = DOCUMENT_PIECE_ROWS
        self.plan = _DocumentPlan(**plan, collections=tuple(collections.values()))

    def records(
        self, kinds: Sequence[str], columns: Sequence[str]
    ) -> tuple[str, bytes, Callable[[bytes], bytes] | None]:
        # ``columns`` are the select items after the key (t.c1, t.c2...), as ``kinds``.
        column: ColumnSql = columns.__getitem__
        if isinstance(self.writer, JSONWriter):
            record = _json_object(self.members, column, kinds, self.aggregates)
            return record, self.writer.object_separator, fix_json
        writer = self.writer
        assert isinstance(writer, XMLWriter)
        children = _xml_children(self.members, column, kinds, self.aggregates)
        start, end = literal(f"<{writer.record_name}>"), literal(f"</{writer.record_name}>\n")
        return f"{start} || {children} || {end}", b"", fix_xml


def _json_object(
    members: Sequence[Member],
    column: ColumnSql,
    kinds: Sequence[str],
    aggregates: Mapping[str, str],
) -> str:
    """SQL for the JSON object of ``members``, as orjson writes a ``Record``."""
    if not members:
        return "'{}'"
    parts = []
    for index, member in enumerate(members):
        key = ("{" if index == 0 else ",") + orjson.dumps(member.name).decode() + ":"
        parts += [literal(key), _json_member(member, column, kinds, aggregates)]
    parts.append("'}'")
    return " || ".join(parts)


def _json_member(
    member: Member, column: ColumnSql, kinds: Sequence[str], aggregates: Mapping[str, str]
) -> str:
    if isinstance(member, Value):
        return json_value(kinds[member.position], column(member.position))
    if isinstance(member, Object):
        inner = _json_object(member.members, column, kinds, aggregates)
        return f"CASE WHEN {column(member.present)} IS NULL THEN 'null' ELSE {inner} END"
    return f"'[' || COALESCE({aggregates[member.name]}, '') || ']'"


def _xml_children(
    members: Sequence[Member],
    column: ColumnSql,
    kinds: Sequence[str],
    aggregates: Mapping[str, str],
) -> str:
    """SQL for the child elements of ``members`` (a ``None`` left out), as ``XMLWriter``
    writes a record's columns and a ``Record``'s members."""
    parts = [_xml_member(member, column, kinds, aggregates) for member in members]
    return " || ".join(parts) if parts else "''"


def _xml_member(
    member: Member, column: ColumnSql, kinds: Sequence[str], aggregates: Mapping[str, str]
) -> str:
    tag = xml_name(member.name)
    start, end = literal(f"<{tag}>"), literal(f"</{tag}>")
    if isinstance(member, Value):
        position = member.position
        return f"COALESCE({xml_element(kinds[position], column(position), tag)}, '')"
    if isinstance(member, Object):
        inner = _xml_children(member.members, column, kinds, aggregates)
        element = f"{start} || {inner} || {end}"
        return f"CASE WHEN {column(member.present)} IS NULL THEN '' ELSE {element} END"
    return f"{start} || COALESCE({aggregates[member.name]}, '') || {end}"


def postgres_document_reader(
    queryset: QuerySet[Any],
    fields: Sequence[Any],
    writer: FormatWriter,
    members: Sequence[Member],
    transforms: Mapping[int, Any],
) -> PostgresDocumentReader | None:
    """The fast reader of the documents of ``members`` (read from the select items
    ``fields``), or ``None`` where it could not write the generic reader's bytes: another
    format, a Python ``transform``, a type it cannot format, datetimes in another time zone,
    a collection it cannot order or link as the generic reader does."""
    if type(writer) not in DOCUMENT_FORMATS or transforms or not members:
        return None
    if not _distinct_names(members) or not takes(queryset):
        return None
    kinds = column_kinds(queryset, ["pk", *fields])
    if kinds is None:
        return None
    key = key_type(kinds[0])
    values = kinds[1:]
    if key is None or not _formatted(members, values, queryset, writer):
        return None
    collections: dict[str, _Collection] = {}
    for member in members:
        if isinstance(member, Many):
            collection = _collection(queryset, member, kinds[0], writer)
            if collection is None:
                return None
            collections[member.name] = collection
    return PostgresDocumentReader(
        queryset,
        fields,
        writer,
        values,  # type: ignore[arg-type]  # no None: checked by _formatted
        key,
        members,
        collections,
    )


def _distinct_names(members: Sequence[Member]) -> bool:
    """Whether no two members of a record or object share a name (a ``Record`` would keep
    one of them)."""
    names = [member.name for member in members]
    if len(set(names)) != len(names):
        return False
    return all(
        _distinct_names(member.members) for member in members if not isinstance(member, Value)
    )


def _positions(members: Sequence[Member]) -> list[int]:
    """The positions of the select items the members read, their objects' keys included."""
    found: list[int] = []
    for member in members:
        if isinstance(member, Value):
            found.append(member.position)
        elif isinstance(member, Object):
            found += [member.present, *_positions(member.members)]
    return found


def _formatted(
    members: Sequence[Member],
    kinds: Sequence[str | None],
    queryset: QuerySet[Any],
    writer: FormatWriter,
) -> bool:
    """Whether every select item the members read has a kind the SQL formats exactly."""
    read = [kinds[position] for position in _positions(members)]
    return None not in read and datetimes_as_written(queryset, read, writer)


def _collection(
    queryset: QuerySet[Any], many: Many, key_kind: str | None, writer: FormatWriter
) -> _Collection | None:
    """The aggregate of a collection's items, or ``None`` where the generic reader's items
    could differ: a link to another field than the record's key, an order that is not
    plain columns, a Python transform, a type the SQL cannot format."""
    items = many.queryset.using(queryset.db)
    child = items.model
    relation = child._meta.get_field(many.link)
    target = getattr(relation, "target_field", None)
    if many.transforms or target is None or not target.primary_key or not plain_rows(items):
        return None
    order = _order(child, tuple(items.query.order_by))
    if order is None:
        return None
    fields = (many.link, *(path for path, _ in order), *many.items)
    kinds = column_kinds(items.order_by(), fields)
    if kinds is None or kinds[0] != key_kind:
        return None
    values = kinds[1 + len(order) :]
    if not _formatted(many.members, values, queryset, writer):
        return None
    names = ["k", *(f"o{index}" for index in range(len(order)))]
    names += [f"c{index}" for index in range(len(many.items))]
    column: ColumnSql = "s.c{}".format
    item_kinds: list[str] = [kind or "" for kind in values]  # unread ones are never formatted
    if isinstance(writer, JSONWriter):
        item = _json_object(many.members, column, item_kinds, {})
        separator = "','"
    else:
        tag = xml_name(many.item)
        children = _xml_children(many.members, column, item_kinds, {})
        item = f"{literal(f'<{tag}>')} || {children} || {literal(f'</{tag}>')}"
        separator = "''"
    ordering = ", ".join(
        f"s.o{index}{' DESC' if descending else ''}" for index, (_, descending) in enumerate(order)
    )
    return _Collection(
        items.order_by(),
        many.link,
        fields,
        ", ".join(names),
        item,
        ordering,
        separator,
        _indexed(child, relation.column, queryset.db),
    )


def _indexed(model: Any, column: str, alias: str) -> bool:
    """Whether an index of ``model``'s table (its primary key, a unique one) starts with
    ``column``."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return any(
        (found["index"] or found["primary_key"] or found["unique"])
        and found["columns"][:1] == [column]
        for found in constraints.values()
    )


def _order(child: Any, order_by: tuple[Any, ...]) -> list[tuple[str, bool]] | None:
    """The paths and directions of a collection's order after its link (``-created_at``,
    ``pk``), or ``None`` for one that is not plain columns (an expression, a relation, which
    Django orders by the related model's own ordering)."""
    order: list[tuple[str, bool]] = []
    for entry in order_by[1:]:
        if not isinstance(entry, str) or entry in ("?", "-?"):
            return None
        path = entry.removeprefix("-")
        if path != "pk":
            try:
                field = resolve_field_path(child, path)[-1]
            except Exception:
                return None
            if field.is_relation:
                return None
        order.append((path, entry.startswith("-")))
    return order
