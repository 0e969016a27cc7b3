"""The query parameters of each service's own paths in the OpenAPI schema: the start
parameters with the service's formats and fields, its filters typed by their form fields, and
the download and history parameters."""

from __future__ import annotations

import copy
import zoneinfo
from collections.abc import Iterator
from typing import Any

from django import forms
from django.core.validators import (
    BaseValidator,
    MaxValueValidator,
    MinValueValidator,
    ProhibitNullCharactersValidator,
)

from django_report_export.columns import column_names
from django_report_export.formats import format_names
from django_report_export.options import OPTIONS
from django_report_export.query import writes_csv
from django_report_export.registry import ExportService

#: The widest integer a filter may be compared with (the databases' 64-bit integers).
INT64 = (-(2**63), 2**63 - 1)


def query_parameter(name: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"in": "query", "name": name, "schema": schema, **extra}


def form_field_schema(field: forms.Field) -> dict[str, Any]:
    """The JSON schema of the values a Django form field accepts, as a query parameter."""
    declared = getattr(field, "openapi_schema", None)
    if declared is not None:
        return copy.deepcopy(dict(declared))
    if isinstance(field, forms.MultipleChoiceField):
        return {"type": "array", "items": choice_schema(field)}
    if isinstance(field, forms.ChoiceField) and not isinstance(field, forms.ModelChoiceField):
        return choice_schema(field)
    if isinstance(field, forms.NullBooleanField | forms.BooleanField):
        return {"type": "boolean"}
    if isinstance(field, forms.DecimalField | forms.FloatField):
        return number_schema(field, "number", None)
    if isinstance(field, forms.IntegerField):
        return number_schema(field, "integer", INT64)
    for field_class, string_format in STRING_FORMATS:
        if isinstance(field, field_class):
            return {"type": "string", "format": string_format}
    schema: dict[str, Any] = {"type": "string"}
    if getattr(field, "max_length", None):
        schema["maxLength"] = field.max_length  # type: ignore[attr-defined]
    if any(isinstance(v, ProhibitNullCharactersValidator) for v in field.validators):
        schema["pattern"] = NO_NUL  # Django's CharField refuses NUL: a 400, not a value
    return schema


#: A string without NUL characters (a regular expression of both Python and ECMA-262).
NO_NUL = r"^[^\x00]*$"


#: Form fields whose values are strings of an OpenAPI format (subclasses first).
STRING_FORMATS: tuple[tuple[type[forms.Field], str], ...] = (
    (forms.DateTimeField, "date-time"),
    (forms.DateField, "date"),
    (forms.TimeField, "time"),
    (forms.UUIDField, "uuid"),
    (forms.EmailField, "email"),
    (forms.URLField, "uri"),
)


def choice_schema(field: forms.ChoiceField) -> dict[str, Any]:
    """The choices' values, those of option groups included; not the empty choice."""
    values: list[str] = []
    choices: Any = field.choices
    for value, label in choices:
        group = label if isinstance(label, list | tuple) else [(value, label)]
        values.extend(str(item) for item, _label in group if item not in ("", None))
    return {"type": "string", "enum": values}


def number_schema(
    field: forms.Field, kind: str, default_range: tuple[int, int] | None
) -> dict[str, Any]:
    """The field's range: the tightest of its ``min_value``/``max_value``, its validators'
    limits (such as the ``MaxValueValidator(1e50)`` django-filter adds to every
    ``NumberFilter``) and ``default_range``."""
    schema: dict[str, Any] = {"type": kind}
    lows = [limit for limit in validator_limits(field, MinValueValidator) if limit is not None]
    highs = [limit for limit in validator_limits(field, MaxValueValidator) if limit is not None]
    if default_range is not None:
        lows.append(default_range[0])
        highs.append(default_range[1])
    low = max(lows, default=None)
    high = min(highs, default=None)
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema


def validator_limits(field: forms.Field, kind: type[BaseValidator]) -> Iterator[Any]:
    attribute = "min_value" if kind is MinValueValidator else "max_value"
    yield getattr(field, attribute, None)
    for validator in field.validators:
        if isinstance(validator, kind):
            limit = validator.limit_value
            yield limit() if callable(limit) else limit


def filter_parameters(service: ExportService) -> list[dict[str, Any]]:
    """One query parameter per filter of the service's FilterSet, typed by its form field.

    An empty value is no filter (what an HTML form sends for an unused field), hence
    ``allowEmptyValue``.
    """
    if service.filterset_class is None:
        return []
    form = service.filterset_class(queryset=service.get_queryset()).form
    parameters = []
    for name, field in form.fields.items():
        schema = form_field_schema(field)
        extra: dict[str, Any] = {"allowEmptyValue": True}
        if schema.get("type") == "array":
            extra.update(style="form", explode=True)
        help_text = str(field.help_text or "")
        if help_text:
            extra["description"] = help_text
        parameters.append(query_parameter(name, schema, **extra))
    return parameters


def start_parameters(service: ExportService) -> list[dict[str, Any]]:
    formats = [name for name in service.formats if name in format_names()]
    return [
        query_parameter(
            "format",
            {"type": "string", "enum": formats},
            required=True,
            description="Export format: one of the service's formats.",
        ),
        query_parameter(
            "fields",
            {
                "type": "array",
                "items": {"type": "string", "enum": column_names(service)},
                "uniqueItems": True,
            },
            style="form",
            explode=False,
            allowEmptyValue=True,
            description=(
                "Comma-separated subset of the service's fields, in the order wanted, each at "
                "most once; absent or empty: all of them."
            ),
        ),
        query_parameter(
            "compression",
            {"type": "string", "enum": ["none", "gzip"]},
            description="`gzip` compresses the file; `none` (the default) does not.",
        ),
        *option_parameters(csv=any(writes_csv(name) for name in formats)),
        query_parameter(
            "notify",
            {"type": "string", "enum": ["email"]},
            description=(
                "`email`: mail the caller's address when the export ends (finished, canceled "
                "or error), with the download link; a caller without an address gets a 400."
            ),
        ),
        *window_parameters(service),
        *filter_parameters(service),
    ]


def window_parameters(service: ExportService) -> list[dict[str, Any]]:
    """``since``, ``from`` and ``to``: only on a service with an ``incremental_field``."""
    field = service.incremental_field
    if not field:
        return []
    bound = (
        "ISO 8601 date and time; without an offset, read in the export's `timezone`. "
        "Not with `since`."
    )
    return [
        query_parameter(
            "since",
            {"type": "string", "enum": ["last"]},
            description=(
                f"`last`: the rows whose `{field}` is at or after the end of the last finished "
                "window of this service and slot (none yet: every row), up to the start."
            ),
        ),
        query_parameter(
            "from",
            {"type": "string", "format": "date-time"},
            description=f"Rows whose `{field}` is at or after this instant. {bound}",
        ),
        query_parameter(
            "to",
            {"type": "string", "format": "date-time"},
            description=f"Rows whose `{field}` is before this instant (default: now). {bound}",
        ),
    ]


#: The IANA time zones this system knows, once for every service's ``timezone`` parameter.
TIME_ZONE = "TimeZone"
SHARED_SCHEMAS: dict[str, Any] = {
    TIME_ZONE: {
        "type": "string",
        "enum": sorted(zoneinfo.available_timezones()),
        "example": "Europe/Berlin",
    }
}


def option_parameters(*, csv: bool = True) -> list[dict[str, Any]]:
    """The file options (the CSV ones only where a CSV format is offered)."""
    return [
        query_parameter(name, option_schema(name), description=option_description(name))
        for name, option in OPTIONS.items()
        if csv or not option.csv_only
    ]


def option_schema(name: str) -> dict[str, Any]:
    option = OPTIONS[name]
    if name == "bom":
        return {"type": "boolean"}
    if name == "delimiter":
        return {"type": "string", "enum": [*option.choices, "\t"]}
    if option.choices:
        return {"type": "string", "enum": list(option.choices)}
    return {"$ref": f"#/components/schemas/{TIME_ZONE}"}


def option_description(name: str) -> str:
    option = OPTIONS[name]
    scope = "CSV formats only (no effect on another format). " if option.csv_only else ""
    tab = " `tab` or a tab character (`%09`) for tab." if name == "delimiter" else ""
    default = f'Default: `REPORT_EXPORT["{option.setting}"]`.'
    return f"{scope}{option.help}{tab} {default}"


def service_parameters(service: ExportService, action: str) -> list[dict[str, Any]]:
    """The query parameters of ``action`` on ``service``'s own path."""
    if action == "start":
        return start_parameters(service)
    if action == "download":
        return [
            query_parameter(
                "id",
                {"type": "string", "format": "uuid"},
                description="A finished export of this service from the history.",
            )
        ]
    if action == "history":
        return [
            query_parameter("page", {"type": "integer", "minimum": 1}),
            query_parameter(
                "page_size",
                {"type": "integer", "minimum": 1},
                description="Exports per page, 20 by default; more than 200 gives 200.",
            ),
        ]
    return []
