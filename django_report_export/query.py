"""The export's queryset: what a start asks for, checked, and the rows it selects.

A start's query parameters become an ``ExportRequest`` (``parse_request``), every problem
reported by parameter name; the admin's selected rows become validated keys
(``clean_keys``). When the export runs, ``export_queryset`` turns the stored request back into
the service's queryset. ``slot_for`` names the slot an export of a service occupies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import django_filters
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import DatabaseError
from django.db.models import QuerySet
from django.http import QueryDict

from django_report_export.columns import column_names, column_paths
from django_report_export.conf import export_settings
from django_report_export.exceptions import InvalidExportRequest, ReportExportError
from django_report_export.formats import CSVWriter, format_names, get_writer_class
from django_report_export.keys import key_field, key_from_json, key_to_json
from django_report_export.models import ReportExport
from django_report_export.options import NAMES as OPTION_NAMES
from django_report_export.options import FileOptions, parse_options
from django_report_export.registry import ExportService
from django_report_export.relations import (
    TO_MANY_HINT,
    one_row_per_record,
    to_many_reason,
    to_many_step,
)
from django_report_export.storage import COMPRESSIONS
from django_report_export.windows import PARAMETERS as WINDOW_PARAMETERS
from django_report_export.windows import WindowRequest, parse_window, window_filter

RESERVED_PARAMETERS = (
    "format",
    "fields",
    "compression",
    "notify",
    *OPTION_NAMES,
    *WINDOW_PARAMETERS,
)
#: Most primary keys an export may be restricted to (``ExportRequest.keys``).
MAX_SELECTED_KEYS = 10_000


@dataclass
class ExportRequest:
    """Validated parameters of a start."""

    format: str
    fields: list[str]
    compression: str = ""
    filters: dict[str, Any] = field(default_factory=dict)
    #: Primary keys to restrict the export to (from ``clean_keys``); ``None``: every row.
    keys: list[Any] | None = None
    #: Key-range shards to split the export into (``None``: the service's, else automatic).
    shards: int | None = None
    #: The file options (``None``: the project's defaults).
    options: FileOptions | None = None
    #: ``"email"``: mail whoever starts the export when it ends (``notify=email``).
    notify: str = ""
    #: An address to mail instead of the user's (the command's ``--notify-email``).
    notify_email: str = ""
    #: The incremental window asked for (``since=last``, ``from``/``to``); fixed at start.
    window: WindowRequest | None = None


def slot_for(service: ExportService, user: Any = None) -> str:
    if export_settings.SLOT_SCOPE == "user" and user is not None and user.pk is not None:
        return f"{service.name}:user:{user.pk}"
    return service.name


def parse_request(service: ExportService, params: Mapping[str, Sequence[str]]) -> ExportRequest:
    """Validate query parameters of a start; every problem is reported by parameter name."""
    errors: dict[str, list[str]] = {}
    filter_names = service.get_filter_names()
    for name in params:
        if name not in RESERVED_PARAMETERS and name not in filter_names:
            errors[name] = [f"Unknown query parameter {name!r} for service {service.name!r}."]

    def single(name: str) -> str:
        values = list(params.get(name, []))
        if len(values) > 1:
            errors[name] = [f"{name!r} may be given only once."]
        return values[0].strip() if values else ""

    export_format = single("format")
    allowed_formats = [f for f in service.formats if f in format_names()]
    if not export_format:
        errors["format"] = [f"This parameter is required; one of: {', '.join(allowed_formats)}."]
    elif export_format not in allowed_formats:
        errors["format"] = [
            f"Format {export_format!r} is not supported by service {service.name!r}; "
            f"one of: {', '.join(allowed_formats)}."
        ]

    names = column_names(service)
    fields = list(names)
    requested = single("fields")
    if requested:
        fields = [name.strip() for name in requested.split(",")]
        unknown = [name for name in fields if name and name not in names]
        if unknown:
            errors["fields"] = [
                f"Unknown field(s) {', '.join(map(repr, unknown))}; "
                f"choose from: {', '.join(names)}."
            ]
        elif "" in fields:
            errors["fields"] = ["An empty field name: separate the names by single commas."]
        elif len(set(fields)) != len(fields):
            errors["fields"] = ["A field is listed more than once."]
    if "fields" not in errors:
        refused = to_many_field_errors(service, fields)
        if refused:
            errors["fields"] = refused

    compression = single("compression").lower()
    if compression in ("none", "identity"):
        compression = ""
    if compression and compression not in COMPRESSIONS:
        errors["compression"] = [f"Unknown compression {compression!r}; one of: gzip, none."]

    csv = writes_csv(export_format) if "format" not in errors else True
    options = parse_options(params, csv=csv, errors=errors)
    window = parse_window(service, params, zone=options.zone, errors=errors)
    notify = single("notify").lower()
    if notify not in ("", "email"):
        errors["notify"] = [f"Unknown notification {notify!r}; one of: email."]

    filters = {
        name: values[0] if len(values) == 1 else list(values)
        for name, values in params.items()
        if name in filter_names
    }
    if service.filterset_class is not None and filters:
        base_filters = service.filterset_class.base_filters
        for name, value in filters.items():
            if isinstance(value, list) and not isinstance(
                base_filters[name], django_filters.MultipleChoiceFilter
            ):
                errors[name] = [f"{name!r} may be given only once."]
        filterset = service.filterset_class(
            data=filter_data(filters), queryset=service.get_queryset()
        )
        if not filterset.is_valid():
            for name, messages in filterset.errors.items():
                errors[name] = [str(message) for message in messages]
        elif not errors:
            check_filters_run(filterset.qs, filters, errors)
    if errors:
        raise InvalidExportRequest(errors, service=service.name)
    return ExportRequest(
        export_format, fields, compression, filters, options=options, notify=notify, window=window
    )


def writes_csv(export_format: str) -> bool:
    """Whether format ``export_format`` is written by a CSV writer (so takes the CSV options)."""
    try:
        return issubclass(get_writer_class(export_format), CSVWriter)
    except LookupError:
        return False


def to_many_field_errors(service: ExportService, fields: Iterable[str]) -> list[str]:
    """Why each of the columns ``fields`` whose path crosses a to-many relation cannot be
    exported (check E008; an expression's joins are checked by E008 alone)."""
    errors = []
    for path in column_paths(service, fields):
        try:
            step = to_many_step(service.model, path)
        except FieldDoesNotExist:
            continue  # check E003 names it; the export fails as it always has
        if step is not None:
            errors.append(f"Field {path!r} {to_many_reason(service, step)} {TO_MANY_HINT}")
    return errors


def clean_keys(service: ExportService, keys: Iterable[Any]) -> list[Any]:
    """Validate primary keys of the service's model into a list of their JSON forms.

    The keys come from the admin's selection; each is converted by the model's primary key
    field, so a value that is not a key of that model is rejected, never passed on as a lookup.
    """
    model = service.model
    cleaned: set[Any] = set()
    invalid: list[str] = []
    for raw in keys:
        try:
            value = key_field(model).to_python(raw)
        except ValidationError:
            value = None
        if value is None or isinstance(value, bool):
            invalid.append(repr(raw))
            continue
        cleaned.add(value)
    errors: list[str] = []
    if invalid:
        errors.append(f"Not a primary key of {model.__name__}: {', '.join(invalid[:5])}.")
    if len(cleaned) > MAX_SELECTED_KEYS:
        errors.append(f"At most {MAX_SELECTED_KEYS} rows can be selected; got {len(cleaned)}.")
    if errors:
        raise InvalidExportRequest({"keys": errors}, service=service.name)
    return [key_to_json(model, key) for key in sorted(cleaned)]


def check_filters_run(queryset: Any, filters: Mapping[str, Any], errors: dict[str, Any]) -> None:
    """Run the filtered query once, so values the form accepts but the database cannot hold
    (a date before year 1 in UTC, an integer beyond 64 bits) are a 400, not a failed export."""
    try:
        queryset.using(export_settings.DATABASE_ALIAS).exists()
    except (OverflowError, ValueError, DatabaseError) as exc:
        message = f"A filter value is out of the database's range: {exc}"
        for name in filters:
            errors[name] = [message]


def filter_data(filters: Mapping[str, Any]) -> Any:
    data = QueryDict(mutable=True)
    for name, value in filters.items():
        data.setlist(name, value if isinstance(value, list) else [value])
    return data


def export_queryset(service: ExportService, export: ReportExport) -> QuerySet[Any]:
    """The service's queryset with the export's filters (and keys), on the export database."""
    queryset = service.get_queryset()
    if service.filterset_class is not None and export.filters:
        filterset = service.filterset_class(data=filter_data(export.filters), queryset=queryset)
        if not filterset.is_valid():
            raise ReportExportError(
                f"The export's filters are no longer valid: {dict(filterset.errors)}",
                service=export.service,
                export_id=export.pk,
            )
        queryset = filterset.qs
    queryset = window_filter(queryset, export)
    # A filter (or the service's own queryset) across a to-many relation joins a row per
    # related object: the export reads each record once all the same.
    queryset = one_row_per_record(queryset)
    if export.keys is not None:
        # The admin action's selected rows: a list of keys validated by ``clean_keys``.
        model = service.model
        queryset = queryset.filter(pk__in=[key_from_json(model, key) for key in export.keys])
    return queryset.using(export_settings.DATABASE_ALIAS).order_by("pk")
