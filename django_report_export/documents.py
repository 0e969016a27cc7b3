"""How an export's columns are read: the reader for a service's columns ``names``.

Flat columns (paths, expressions, choice labels) are items of the export's ``values_list``
and take whichever reader ``readers.get_reader`` picks, the PostgreSQL fast path included.
A nested object (``Nested``) or a collection (``Collection``) makes the export a document:
it is read by the ``DocumentReader`` on the generic path, on every database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import Model, Q, QuerySet

from django_report_export.columns import (
    Collection,
    Column,
    Entry,
    Nested,
    column_selection,
    columns_of,
    entries,
    is_document,
    selection,
)
from django_report_export.formats.base import FormatWriter
from django_report_export.readers import ChunkReader, get_reader
from django_report_export.readers.documents import DocumentReader, Many, Member, Object, Value
from django_report_export.registry import ExportService, resolve_field_path


def reader_for(
    service: ExportService, names: Sequence[str], queryset: QuerySet[Any], writer: FormatWriter
) -> ChunkReader:
    """The reader of the export of ``service``'s columns ``names`` from ``queryset``."""
    if not is_document(service, names):
        chosen = selection(service, names, queryset.db)
        return get_reader(queryset, chosen.items, writer, chosen.transforms)
    by_name = {entry.name: entry for entry in columns_of(service)}
    plan = _Plan(queryset.db)
    members = [plan.member(service.model, by_name.get(name) or Column(name)) for name in names]
    return DocumentReader(queryset, plan.items, writer, members, plan.transforms)


class _Plan:
    """The select items of one query (the export's, or a collection's) and the members they
    are put together into."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.items: list[Any] = []
        self.transforms: dict[int, Any] = {}

    def add(self, item: Any) -> int:
        self.items.append(item)
        return len(self.items) - 1

    def member(self, model: type[Model], entry: Entry, prefix: str = "") -> Member:
        if isinstance(entry, Column):
            chosen = column_selection(model, [entry], self.alias, prefix)
            position = self.add(chosen.items[0])
            if 0 in chosen.transforms:
                self.transforms[position] = chosen.transforms[0]
            return Value(entry.name, position)
        if isinstance(entry, Nested):
            related = resolve_field_path(model, entry.path)[-1].related_model
            present = self.add(f"{prefix}{entry.path}__pk")
            inner = f"{prefix}{entry.path}__"
            members = tuple(self.member(related, e, inner) for e in entries(entry.fields))
            return Object(entry.name, present, members)
        return self.collection(model, entry)

    def collection(self, model: type[Model], entry: Collection) -> Many:
        relation: Any = model._meta.get_field(entry.path)
        child = relation.related_model
        link = relation.field.name
        plan = _Plan(self.alias)
        members = tuple(plan.member(child, e) for e in entries(entry.fields))
        queryset = child._default_manager.all()
        if isinstance(entry.filter, Q):
            queryset = queryset.filter(entry.filter)
        elif entry.filter:
            queryset = queryset.filter(**entry.filter)
        queryset = queryset.order_by(link, *entry.order_by, "pk")
        return Many(
            entry.name,
            queryset,
            link,
            tuple(plan.items),
            members,
            entry.item,
            plan.transforms,
        )
