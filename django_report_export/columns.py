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
``transform`` runs in Python, so an export with one takes the generic path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.exceptions import FieldDoesNotExist, FieldError
from django.db import connections
from django.db.models import Case, CharField, DecimalField, F, Value, When
from django.db.models.expressions import Combinable
from django.db.models.functions import Cast

from django_report_export.options import field_label
from django_report_export.registry import ExportService, resolve_field_path
from django_report_export.relations import joins_many_rows, to_many_reason, to_many_step

#: What a reader selects for one column: a field path, or an expression.
SelectItem = Any


class Column:
    """One exported column.

    ``name`` is the key in JSON and XML and the CSV header (``header=names``); ``label`` the
    human header (``header=labels``, a translatable string; the field's ``verbose_name`` when
    unset). ``source`` is a field path (``"customer__email"``; ``name`` when unset) or a
    query expression (``F``, ``Concat``, ``Case``, ``Coalesce``, arithmetic, ``Subquery``).
    ``display=True`` writes the label of a choice field's value instead of its code.
    ``transform`` is applied to each value in Python: such an export takes the generic path.
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

    def select_item(self, service: ExportService) -> SelectItem:
        """What ``values_list`` selects for this column."""
        if self.path is None:
            return self.source
        if self.display:
            return choice_label(service, self.path)
        return self.path

    def header_label(self, service: ExportService) -> str:
        if self.label is not None:
            return str(self.label)
        if self.path is not None:
            label = field_label(service.model, self.path)
            return self.name if label == self.path else label
        return self.name

    def __repr__(self) -> str:
        return f"Column({self.name!r}, {self.source!r})"


def choice_label(service: ExportService, path: str) -> Any:
    """A ``CASE`` giving the label of the choice field at ``path`` (in the active language);
    a value without a choice as its text, ``NULL`` as ``NULL``."""
    model_field = resolve_field_path(service.model, path)[-1]
    cases = [
        When(**{path: value}, then=Value(str(label)))
        for value, label in model_field.flatchoices
        if value is not None
    ]
    text = F(path) if isinstance(model_field, CharField) else Cast(path, CharField())
    if not cases:
        return text
    return Case(*cases, default=text, output_field=CharField())


def columns_of(service: ExportService) -> list[Column]:
    """The service's ``fields`` as columns: a plain path is a column of that name."""
    return [item if isinstance(item, Column) else Column(item) for item in service.fields]


def column_names(service: ExportService) -> list[str]:
    return [column.name for column in columns_of(service)]


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
    sqlite = connections[alias or service.get_queryset().db].vendor == "sqlite"
    items: list[SelectItem] = []
    transforms: dict[int, Callable[[Any], Any]] = {}
    for position, name in enumerate(names):
        column = by_name.get(name) or Column(name)
        items.append(column.select_item(service))
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
    return tuple((by_name.get(name) or Column(name)).header_label(service) for name in names)


def column_paths(service: ExportService, names: Iterable[str] | None = None) -> list[str]:
    """The field paths of the path columns ``names`` (all when ``None``); expressions are
    checked by ``column_problems`` instead."""
    wanted = None if names is None else set(names)
    return [
        column.path
        for column in columns_of(service)
        if column.path is not None and (wanted is None or column.name in wanted)
    ]


def column_problems(service: ExportService) -> list[tuple[int, str]]:
    """What makes the service's columns impossible to export exactly: ``(check id, text)``.

    E003 a path that does not resolve, E008 one across a to-many relation (or an expression
    joining one), E032 two columns of one name, E033 a column name with ``__`` or not a plain
    name, E034 an expression the database cannot evaluate per row (an aggregate outside a
    ``Subquery``, a window, one that does not compile), E035 ``display`` on a field without
    choices."""
    problems: list[tuple[int, str]] = []
    seen: set[str] = set()
    for item in service.fields:
        column = item if isinstance(item, Column) else Column(item)
        if not isinstance(column.name, str) or not column.name:
            problems.append((33, f"column name {column.name!r} is not a non-empty string"))
            continue
        if column.name in seen:
            problems.append((32, f"two columns are named {column.name!r}"))
        seen.add(column.name)
        if isinstance(item, Column) and ("__" in column.name or not _plain_name(column.name)):
            problems.append(
                (
                    33,
                    f"column name {column.name!r} is not a plain name (letters, digits, '_', "
                    "'-', no '__', not starting with a digit)",
                )
            )
        problems.extend(_source_problems(service, column))
    return problems


def _plain_name(name: str) -> bool:
    return (name[0].isalpha() or name[0] == "_") and all(
        char.isalnum() or char in "_-" for char in name
    )


def _source_problems(service: ExportService, column: Column) -> list[tuple[int, str]]:
    if column.path is None:
        return _expression_problems(service, column)
    label = service.model._meta.label
    try:
        model_field = resolve_field_path(service.model, column.path)[-1]
    except FieldDoesNotExist:
        return [(3, f"field {column.path!r} does not resolve on {label}")]
    step = to_many_step(service.model, column.path)
    if step is not None:
        return [(8, f"field {column.path!r} {to_many_reason(service, step)}")]
    if column.display and not getattr(model_field, "flatchoices", None):
        return [(35, f"column {column.name!r}: display=True on a field without choices")]
    return []


def _expression_problems(service: ExportService, column: Column) -> list[tuple[int, str]]:
    source = column.source
    name = column.name
    if not hasattr(source, "resolve_expression"):
        return [(34, f"column {name!r}: {source!r} is neither a field path nor an expression")]
    if getattr(source, "contains_aggregate", False):
        message = "aggregates the exported rows; aggregate related rows in a Subquery"
        return [(34, f"column {name!r} {message}")]
    if getattr(source, "contains_over_clause", False):
        return [(34, f"column {name!r} is a window expression")]
    try:
        values = service.model._base_manager.values_list(source)
        values.query.get_compiler(using=values.db).as_sql()
    except FieldError as exc:
        return [(3, f"column {name!r}: {exc}")]
    except Exception as exc:
        return [(34, f"column {name!r}: the expression does not compile ({exc})")]
    if joins_many_rows(values):
        message = "joins a to-many relation (one record, many rows); aggregate it in a Subquery"
        return [(8, f"column {name!r} {message}")]
    return []
