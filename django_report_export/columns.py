"""Columns of a service: a name (the key in JSON and XML, the CSV header), a label, a source.

# shop/report_exports.py
from django.db.models import F, Sum, OuterRef, Subquery
from django_report_export.columns import Column

@register("orderSummary")
class OrderSummary(ExportService):
    model = Order
    fields = [
        "id",                                             # a plain path: name == path
        Column("email", "customer__email", label=_("Customer e-mail")),
        Column("status", display=True),                   # the choice's label, not its code
        Column("gross", F("total") + F("shipping")),      # computed by the database
        Column("units", Subquery(units_per_order)),       # an aggregate over related rows
        Column("note", transform=str.upper),              # Python, per value: generic path
    ]

A column is read as one item of ``values_list``: a path, or an expression the database
evaluates, so that both read paths (and the PostgreSQL fast path's SQL) see it alike. Only
``transform`` runs in Python, so an export with one takes the generic path. ``Nested``
(a to-one relation as an object) and ``Collection`` (a reverse foreign key as a list of
objects) make a document, read by the reader ``documents.reader_for`` picks (on PostgreSQL
the database builds JSON and XML documents: ``readers/postgres_documents.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.exceptions import FieldError
from django.db import connections
from django.db.models import Case, CharField, DecimalField, F, Model, Value, When
from django.db.models.expressions import Combinable
from django.db.models.functions import Cast

from django_report_export.options import field_label
from django_report_export.registry import ExportService, resolve_field_path

#: What a reader selects for one column: a field path, or an expression.
SelectItem = Any


class Column:
    """One exported column.

    ``name`` is the key in JSON and XML and the CSV header (``header=names``); ``label`` the
    human header (CSV's ``header=labels``, and xlsx's where declared; a translatable string;
    the field's ``verbose_name`` when unset). ``source`` is a field path
    (``"customer__email"``; ``name`` when unset) or a query expression (``F``, ``Concat``,
    ``Case``, ``Coalesce``, arithmetic, ``Subquery``). ``display=True`` writes the label of
    a choice field's value instead of its code. ``transform`` is applied to each value in
    Python: such an export takes the generic path.
    """

    def __init__(
        self,
        name: str,
        source: str | Combinable | None = None,
        *,
        label: Any = None,
        display: bool = False,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.name = name
        self.source = name if source is None else source
        self.label = label
        self.display = display
        self.transform = transform

    @property
    def path(self) -> str | None:
        """The field path the column reads, or ``None`` for an expression."""
        return self.source if isinstance(self.source, str) else None

    def select_item(self, model: type[Model], prefix: str = "") -> SelectItem:
        """What ``values_list`` selects for this column (``prefix``: the path of the to-one
        relation a ``Nested`` object follows from the exported model)."""
        if self.path is None:
            return self.source
        if self.display:
            return choice_label(model, prefix + self.path)
        return prefix + self.path

    def header_label(self, model: type[Model]) -> str:
        if self.label is not None:
            return str(self.label)
        if self.path is not None:
            return field_label(model, self.path)
        return self.name

    def __repr__(self) -> str:
        return f"Column({self.name!r}, {self.source!r})"


def choice_label(model: type[Model], path: str) -> Any:
    """A ``CASE`` giving the label of the choice field at ``path`` (in the active language);
    a value without a choice as its text, ``NULL`` as ``NULL``."""
    model_field = resolve_field_path(model, path)[-1]
    cases = [
        When(**{path: value}, then=Value(str(label)))
        for value, label in model_field.flatchoices
        if value is not None
    ]
    text = F(path) if isinstance(model_field, CharField) else Cast(path, CharField())
    if not cases:
        return text
    return Case(*cases, default=text, output_field=CharField())


class Nested:
    """A to-one relation (a foreign key, a one-to-one) written as an object of its own
    ``fields`` (paths or ``Column``s of the related model, or ``Nested`` again); ``null``
    when the relation is empty. Read in the export's own query (joined): no query more."""

    def __init__(self, name: str, path: str, fields: Sequence[Any], *, label: Any = None) -> None:
        self.name = name
        self.path = path
        self.fields = list(fields)
        self.label = label

    def header_label(self, model: type[Model]) -> str:
        return self.name if self.label is None else str(self.label)

    def __repr__(self) -> str:
        return f"Nested({self.name!r}, {self.path!r})"


class Collection:
    """A to-many relation seen from the exported model (a reverse foreign key: an order's
    ``lines``) written as a list of objects of its own ``fields`` (paths, ``Column``s or
    ``Nested`` of the related model). The items are in ``order_by`` (then key) order, the
    related model's key order when unset; ``filter`` (a ``Q`` or a dict of lookups) narrows
    them. XML writes one ``item`` element per item inside the collection's element. The
    items of a chunk's records are read with one query per collection per chunk."""

    def __init__(
        self,
        name: str,
        path: str,
        fields: Sequence[Any],
        *,
        order_by: Sequence[str] | None = None,
        filter: Any = None,
        item: str = "item",
        label: Any = None,
    ) -> None:
        self.name = name
        self.path = path
        self.fields = list(fields)
        self.order_by = list(order_by or ())
        self.filter = filter
        self.item = item
        self.label = label

    def header_label(self, model: type[Model]) -> str:
        return self.name if self.label is None else str(self.label)

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, {self.path!r})"


#: One entry of a service's (or a ``Nested``'s, a ``Collection``'s) ``fields``, normalized.
Entry = Column | Nested | Collection


def entries(fields: Iterable[Any]) -> list[Entry]:
    """``fields`` as entries: a plain path is a column of that name."""
    return [
        item if isinstance(item, Column | Nested | Collection) else Column(item) for item in fields
    ]


def columns_of(service: ExportService) -> list[Entry]:
    """The service's ``fields`` as entries: a plain path is a column of that name."""
    return entries(service.fields)


def column_names(service: ExportService) -> list[str]:
    return [column.name for column in columns_of(service)]


def is_document(service: ExportService, names: Iterable[str] | None = None) -> bool:
    """Whether the columns ``names`` (all when ``None``) hold a nested object or collection."""
    wanted = None if names is None else set(names)
    return any(
        isinstance(entry, Nested | Collection) and (wanted is None or entry.name in wanted)
        for entry in columns_of(service)
    )


@dataclass
class Selection:
    """What the readers select for an export's columns, and the Python transforms by position."""

    items: list[SelectItem]
    transforms: dict[int, Callable[[Any], Any]] = field(default_factory=dict)


def selection(service: ExportService, names: Sequence[str], alias: str = "") -> Selection:
    """The select items of the columns ``names`` (an export's ``fields``), in that order,
    read from the database ``alias`` (the service queryset's when empty).

    A name the service no longer declares is read as a path, as exports stored before
    columns had names were."""
    by_name = {column.name: column for column in columns_of(service)}
    columns = [by_name.get(name) or Column(name) for name in names]
    alias = alias or service.get_queryset().db
    return column_selection(service.model, [c for c in columns if isinstance(c, Column)], alias)


def column_selection(
    model: type[Model], columns: Sequence[Column], alias: str, prefix: str = ""
) -> Selection:
    """The select items of ``columns`` of ``model`` (behind ``prefix``), and their Python
    transforms by position, as read from the database ``alias``."""
    sqlite = connections[alias].vendor == "sqlite"
    items: list[SelectItem] = []
    transforms: dict[int, Callable[[Any], Any]] = {}
    for position, column in enumerate(columns):
        items.append(column.select_item(model, prefix))
        if column.transform is not None:
            transforms[position] = column.transform
        elif sqlite and column.path is None:
            rounding = _decimal_rounding(column.source)
            if rounding is not None:
                transforms[position] = rounding
    return Selection(items, transforms)


def _decimal_rounding(expression: Any) -> Callable[[Any], Any] | None:
    """For SQLite, which computes decimals as floats (Django gives 15 digits of them): the
    rounding to the decimal places of an expression's ``DecimalField``, as Django rounds a
    decimal column's values, so that ``F("total") + F("shipping")`` reads ``12.34``."""
    try:
        output = expression.output_field
    except (AttributeError, FieldError):
        return None
    places = getattr(output, "decimal_places", None)
    if not isinstance(output, DecimalField) or places is None:
        return None
    quantum = Decimal(1).scaleb(-places)

    def rounded(value: Any) -> Any:
        return value.quantize(quantum) if isinstance(value, Decimal) else value

    return rounded


def header_labels(service: ExportService, names: Iterable[str]) -> tuple[str, ...]:
    """The human headers of the columns ``names``, in the active language."""
    by_name = {column.name: column for column in columns_of(service)}
    model = service.model
    return tuple((by_name.get(name) or Column(name)).header_label(model) for name in names)


def column_paths(service: ExportService, names: Iterable[str] | None = None) -> list[str]:
    """The field paths of the path columns ``names`` (all when ``None``); expressions are
    checked by ``column_problems`` instead."""
    wanted = None if names is None else set(names)
    return [
        column.path
        for column in columns_of(service)
        if isinstance(column, Column)
        and column.path is not None
        and (wanted is None or column.name in wanted)
    ]


def describe(model: type[Model], fields: Iterable[Any]) -> list[dict[str, Any]]:
    """The shape of records of ``fields`` of ``model``, as the listing shows it: each entry's
    ``name``, ``label`` (in the active language) and ``kind`` (``value``; ``object``, a
    nested to-one relation; ``list``, a collection), and an object's or list's ``fields``."""
    described: list[dict[str, Any]] = []
    for entry in entries(fields):
        if isinstance(entry, Column):
            described.append({"name": entry.name, "label": _label(entry, model), "kind": "value"})
            continue
        kind = "object" if isinstance(entry, Nested) else "list"
        related = _related_model(model, entry)
        inner = describe(related, entry.fields) if related is not None else []
        described.append(
            {"name": entry.name, "label": entry.header_label(model), "kind": kind, "fields": inner}
        )
    return described


def _label(column: Column, model: type[Model]) -> str:
    try:
        return column.header_label(model)
    except Exception:
        return column.name


def _related_model(model: type[Model], entry: Nested | Collection) -> type[Model] | None:
    try:
        related = resolve_field_path(model, entry.path)[-1].related_model
    except Exception:
        return None
    return related if isinstance(related, type) else None
