"""Relations that give a record many rows: field paths and filters across a to-many relation.

An export reads one row per record, in keyset chunks by the record's primary key. A field
path across a to-many relation (``products__sku`` on a category) would join one row per
related object, and paging by the record's key would skip those past a chunk boundary: such
a path is refused (system check E008, and at start); such rows are a ``Collection``. A
filter across such a relation (categories by ``products__sku``) may join several rows per
record too: ``one_row_per_record`` turns the filtered queryset into one that holds each
record once, whatever the filter.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.fields.related import ForeignObjectRel
from django.db.models.sql.datastructures import Join

from django_report_export.registry import ExportService, resolve_field_path


def gives_many(field: Any) -> bool:
    """Whether the relation ``field`` leads to many objects: a foreign key or many-to-many
    seen from its other side (unless the foreign key is unique: a one-to-one), a
    many-to-many, a generic relation."""
    if isinstance(field, ForeignObjectRel):
        return not getattr(field.field, "unique", False)
    return bool(field.is_relation and (field.many_to_many or field.one_to_many))


def to_many_step(model: type[models.Model], path: str) -> str | None:
    """The part of ``path`` up to its first relation that leads to many objects, or ``None``
    when the path gives one value per record. Raises ``FieldDoesNotExist`` for a path that
    does not resolve."""
    names = path.split("__")
    for index, field in enumerate(resolve_field_path(model, path)):
        if gives_many(field):
            return "__".join(names[: index + 1])
    return None


TO_MANY_HINT = (
    "Export the related rows from a service of the related model, with this model's fields "
    "through its foreign key (e.g. a product service with 'category__name'), or filter by "
    "the relation instead of exporting it."
)


def to_many_reason(service: ExportService, step: str) -> str:
    """Why a field path through the to-many relation ``step`` cannot be exported."""
    model = service.model._meta
    return (
        f"crosses the to-many relation {step!r}: a {model.verbose_name} would be exported once "
        f"per related row, and paging by the {model.verbose_name}'s key would lose the rows "
        "past a chunk boundary. Declare the relation as a columns.Collection instead."
    )


def joins_many_rows(queryset: models.QuerySet[Any]) -> bool:
    """Whether the queryset's SQL joins a relation that can give a record several rows: a
    join that follows a relation from its other side (a reverse foreign key, the first half
    of a many-to-many, a generic relation) to many objects."""
    for join in queryset.query.alias_map.values():
        field = join.join_field if isinstance(join, Join) else None
        if isinstance(field, ForeignObjectRel) and gives_many(field):
            return True
    return False


def one_row_per_record(queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
    """``queryset``, or, when its joins can repeat a record, the records it selects each once.

    The filtered query becomes a subquery of keys (``pk IN (...)``): unlike ``distinct()``,
    that keeps the outer query one plain row per record, so keyset paging, counting and the
    PostgreSQL fast path work on it as on any export.
    """
    if not joins_many_rows(queryset):
        return queryset
    keys = queryset.order_by().values("pk")
    rows: models.QuerySet[Any] = queryset.model._base_manager.using(queryset.db).filter(pk__in=keys)
    return rows
