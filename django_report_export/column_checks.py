"""What the system checks refuse in a service's columns (``checks.check_services``).

Each problem is a check id and a sentence: E003 a path that does not resolve, E008 one
across a to-many relation (or an expression that joins one), E033 two entries of one name,
E034 a name that is not a plain name (``__`` in it, say), E035 an expression the database
cannot evaluate per row (an aggregate outside a ``Subquery``, a window, one that does not
compile), E036 ``display`` on a field without choices, E037 a ``Nested`` path that is not a
to-one relation, a ``Collection`` path that is not a reverse foreign key of the exported
model, or a collection inside another, E038 a format that cannot hold the documents (xlsx;
csv unless its one collection is the service's ``flatten``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import FieldDoesNotExist, FieldError
from django.db.models import Model
from django.db.models.fields.related import ForeignObjectRel

from django_report_export.columns import Collection, Column, Nested, entries
from django_report_export.registry import ExportService, resolve_field_path
from django_report_export.relations import gives_many, joins_many_rows, to_many_step

Problem = tuple[int, str]
#: Formats whose writers hold nested objects and lists.
DOCUMENT_FORMATS = ("json", "jsonl", "xml")


def column_problems(service: ExportService) -> list[Problem]:
    problems = entry_problems(service.model, service.fields, "", top=True)
    return problems + format_problems(service)


def format_problems(service: ExportService) -> list[Problem]:
    """E038: a document service's formats. JSON, JSON Lines and XML hold documents; csv one
    with nested objects (as ``<name>.<member>`` columns) and at most one collection, the
    service's ``flatten`` (one row per item); xlsx none."""
    top = entries(service.fields)
    nested = [e.name for e in top if isinstance(e, Nested | Collection)]
    if not nested:
        return []
    collections = [e.name for e in top if isinstance(e, Collection)]
    flatten = service.flatten
    problems: list[Problem] = []
    if flatten is not None and flatten not in collections:
        problems.append((38, f"flatten = {flatten!r} names no Collection of its fields"))
    for name in service.formats:
        if name in DOCUMENT_FORMATS:
            continue
        if name == "csv" and all(c == flatten for c in collections):
            continue
        reason = (
            "csv flattens one collection, the one named by 'flatten'"
            if name == "csv"
            else f"{name!r} cannot hold the nested {', '.join(map(repr, nested))}"
        )
        problems.append((38, f"format {name!r}: {reason}; offer json, jsonl, xml"))
    return problems


def entry_problems(
    model: type[Model], fields: Sequence[Any], where: str, *, top: bool = False
) -> list[Problem]:
    """The problems of ``fields`` of ``model``; ``where`` names the entry they are inside."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for item in fields:
        entry = item if isinstance(item, Column | Nested | Collection) else Column(item)
        name = entry.name
        if not isinstance(name, str) or not name:
            problems.append((34, f"{where}column name {name!r} is not a non-empty string"))
            continue
        if name in seen:
            problems.append((33, f"{where}two columns are named {name!r}"))
        seen.add(name)
        if not isinstance(item, str) and ("__" in name or not _plain_name(name)):
            problems.append(
                (
                    34,
                    f"{where}column name {name!r} is not a plain name (letters, digits, '_', "
                    "'-', no '__', not starting with a digit)",
                )
            )
        if isinstance(entry, Column):
            problems.extend(_column_problems(model, entry, where))
        elif isinstance(entry, Nested):
            problems.extend(_nested_problems(model, entry, where))
        elif not top:
            message = "a collection inside a nested entry is not supported"
            problems.append((37, f"{where}{name!r}: {message}"))
        else:
            problems.extend(_collection_problems(model, entry))
    return problems


def _plain_name(name: str) -> bool:
    return (name[0].isalpha() or name[0] == "_") and all(
        char.isalnum() or char in "_-" for char in name
    )


def _column_problems(model: type[Model], column: Column, where: str) -> list[Problem]:
    if column.path is None:
        return _expression_problems(model, column, where)
    label = model._meta.label
    try:
        model_field = resolve_field_path(model, column.path)[-1]
    except FieldDoesNotExist:
        return [(3, f"{where}field {column.path!r} does not resolve on {label}")]
    step = to_many_step(model, column.path)
    if step is not None:
        return [
            (
                8,
                f"{where}field {column.path!r} crosses the to-many relation {step!r}: a "
                f"{model._meta.verbose_name} would be exported once per related row, and "
                f"paging by the {model._meta.verbose_name}'s key would lose the rows past a "
                "chunk boundary; export it as a Collection",
            )
        ]
    if column.display and not getattr(model_field, "flatchoices", None):
        return [(36, f"{where}column {column.name!r}: display=True on a field without choices")]
    return []


def _expression_problems(model: type[Model], column: Column, where: str) -> list[Problem]:
    source = column.source
    name = f"{where}column {column.name!r}"
    if not hasattr(source, "resolve_expression"):
        return [(35, f"{name}: {source!r} is neither a field path nor an expression")]
    if where and where.startswith("nested"):
        return [(35, f"{name}: an expression in a nested object (declare it on the service)")]
    if getattr(source, "contains_aggregate", False):
        return [(35, f"{name} aggregates the exported rows; aggregate related rows in a Subquery")]
    if getattr(source, "contains_over_clause", False):
        return [(35, f"{name} is a window expression")]
    try:
        values = model._base_manager.values_list(source)
        values.query.get_compiler(using=values.db).as_sql()
    except FieldError as exc:
        return [(3, f"{name}: {exc}")]
    except Exception as exc:
        return [(35, f"{name}: the expression does not compile ({exc})")]
    if joins_many_rows(values):
        message = "joins a to-many relation (one record, many rows); aggregate it in a Subquery"
        return [(8, f"{name} {message}")]
    return []


def _nested_problems(model: type[Model], nested: Nested, where: str) -> list[Problem]:
    label = model._meta.label
    try:
        chain = resolve_field_path(model, nested.path)
    except FieldDoesNotExist:
        return [(3, f"{where}nested {nested.name!r}: {nested.path!r} does not resolve on {label}")]
    last = chain[-1]
    if any(gives_many(field) for field in chain) or not last.is_relation:
        message = f"{nested.path!r} is not a to-one relation of {label}"
        return [(37, f"{where}nested {nested.name!r}: {message}")]
    inner = f"nested {nested.name!r}: "
    return entry_problems(last.related_model, nested.fields, inner)


def _collection_problems(model: type[Model], collection: Collection) -> list[Problem]:
    label = model._meta.label
    where = f"collection {collection.name!r}: "
    try:
        relation = model._meta.get_field(collection.path)
    except FieldDoesNotExist:
        return [(3, f"{where}{collection.path!r} is not a relation of {label}")]
    if not isinstance(relation, ForeignObjectRel) or not gives_many(relation):
        return [(37, f"{where}{collection.path!r} is not a reverse foreign key of {label}")]
    if relation.many_to_many:
        return [(37, f"{where}{collection.path!r} is a many-to-many relation")]
    child = relation.related_model
    problems = entry_problems(child, collection.fields, where)
    for path in collection.order_by:
        try:
            resolve_field_path(child, path.removeprefix("-"))
        except FieldDoesNotExist:
            problems.append(
                (3, f"{where}order_by {path!r} does not resolve on {child._meta.label}")
            )
    return problems
