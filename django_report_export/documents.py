"""How an export's columns are read: the reader for a service's columns ``names``.

Flat columns (paths, expressions, choice labels) are items of the export's ``values_list``
and take whichever reader ``readers.get_reader`` picks, the PostgreSQL fast path included.
A nested object (``Nested``) or a collection (``Collection``) makes the export a document:
on PostgreSQL the database builds its JSON or XML where it can write the same bytes
(``readers.postgres_documents``); elsewhere, and in csv (flattened), the ``DocumentReader``
reads it on the generic path.
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
    header_labels,
    is_document,
    selection,
)
from django_report_export.conf import export_settings
from django_report_export.formats import CSVWriter, XLSXWriter, get_writer_class
from django_report_export.formats.base import FormatWriter
from django_report_export.readers import ChunkReader, get_reader
from django_report_export.readers.documents import DocumentReader, Many, Member, Object, Value
from django_report_export.readers.postgres_documents import postgres_document_reader
from django_report_export.registry import ExportService, resolve_field_path


def reader_for(
    service: ExportService, names: Sequence[str], queryset: QuerySet[Any], writer: FormatWriter
) -> ChunkReader:
    """The reader of the export of ``service``'s columns ``names`` from ``queryset``."""
    if not is_document(service, names):
        chosen = selection(service, names, queryset.db)
        return get_reader(queryset, chosen.items, writer, chosen.transforms)
    plan = _Plan(queryset.db)
    members = [plan.member(service.model, entry) for entry in _selected(service, names)]
    flat = isinstance(writer, CSVWriter)
    if export_settings.FAST_PATH and not flat:
        fast = postgres_document_reader(queryset, plan.items, writer, members, plan.transforms)
        if fast is not None:
            return fast
    return DocumentReader(queryset, plan.items, writer, members, plan.transforms, flat=flat)


def _selected(service: ExportService, names: Sequence[str]) -> list[Entry]:
    by_name = {entry.name: entry for entry in columns_of(service)}
    return [by_name.get(name) or Column(name) for name in names]


def flattens(service: ExportService, names: Sequence[str], export_format: str) -> bool:
    """Whether the export is written one row per item of the service's ``flatten``
    collection, nested objects as columns: a document in csv."""
    return is_document(service, names) and issubclass(get_writer_class(export_format), CSVWriter)


def written_columns(service: ExportService, names: Sequence[str], export_format: str) -> list[str]:
    """The columns of the file: ``names``, or, flattened, each nested member and each item
    field as ``<entry>.<member>`` (``billing.city``, ``lines.sku``)."""
    if not flattens(service, names, export_format):
        return list(names)
    return [name for entry in _selected(service, names) for name, _ in _flat(entry, service.model)]


def written_labels(
    service: ExportService, names: Sequence[str], export_format: str
) -> tuple[str, ...]:
    """The header labels of ``written_columns`` (in the active language)."""
    if not flattens(service, names, export_format):
        return header_labels(service, names)
    return tuple(
        label for entry in _selected(service, names) for _, label in _flat(entry, service.model)
    )


def sheet_labels(
    service: ExportService, names: Sequence[str], export_format: str
) -> tuple[str, ...] | None:
    """An xlsx's header row when one of the columns ``names`` declares a ``label``: the
    declared labels (in the active language), the names elsewhere; ``None`` otherwise (and
    for other formats): the header row is the names."""
    if not issubclass(get_writer_class(export_format), XLSXWriter):
        return None
    selected = _selected(service, names)
    if all(getattr(entry, "label", None) is None for entry in selected):
        return None
    return tuple(entry.name if entry.label is None else str(entry.label) for entry in selected)


def _flat(entry: Entry, model: type[Model]) -> list[tuple[str, str]]:
    """The flattened ``(name, label)`` of an entry of ``model``."""
    if isinstance(entry, Column):
        return [(entry.name, entry.header_label(model))]
    if isinstance(entry, Nested):
        related = resolve_field_path(model, entry.path)[-1].related_model
    else:
        related = model._meta.get_field(entry.path).related_model
    label = entry.header_label(model)
    return [
        (f"{entry.name}.{name}", f"{label}: {inner}")
        for member in entries(entry.fields)
        for name, inner in _flat(member, related)
    ]


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
