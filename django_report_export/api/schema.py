"""OpenAPI description of the report endpoints, for drf-spectacular when it is installed.

``document`` decorates the viewset; without drf-spectacular it changes nothing. The description
is checked against the live API by ``tests/test_hostile.py`` (schemathesis): every status code,
content type and body the endpoints answer with is described here, and every request the
schema admits is accepted (and every one it refuses is a 4xx).

``ReportSchemaGenerator`` (drf-spectacular's ``DEFAULT_GENERATOR_CLASS``) describes each
registered service on paths of its own (``/api/report/order/start``), with its own formats,
fields and filters; drf-spectacular's own generator describes one generic ``{service}`` path.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from django import forms
from django.core.signals import setting_changed
from django.utils.translation import get_language

from django_report_export.api.serializers import (
    ErrorSerializer,
    HistorySerializer,
    ServiceSerializer,
    StatusSerializer,
)

if TYPE_CHECKING:
    from django_report_export.registry import ExportService

try:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.openapi import AutoSchema
    from drf_spectacular.types import OpenApiTypes
    from drf_spectacular.utils import (
        OpenApiParameter,
        OpenApiResponse,
        extend_schema,
        extend_schema_view,
        inline_serializer,
    )
except ImportError:  # pragma: no cover - drf-spectacular is optional
    extend_schema_view = None  # type: ignore[assignment]
    AutoSchema = object  # type: ignore[assignment,misc]
    SchemaGenerator = object  # type: ignore[assignment,misc]


class ReportAutoSchema(AutoSchema):
    """drf-spectacular's schema, but for the listing: one array, not a page of one.

    The viewset has a ``pagination_class`` for history, which paginates by hand (and is
    described as such below); drf-spectacular would otherwise wrap the listing, the viewset's
    ``list`` action, in a page object it never is.
    """

    def _get_paginator(self) -> None:
        return None

    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        """The generic operation, or, on a service's own path, that service's operation."""
        operation = super().get_operation(*args, **kwargs)
        service = getattr(self.view, "service", None)
        if operation is None or service is None:
            return operation
        operation["parameters"] = service_parameters(service, getattr(self.view, "action", ""))
        operation["tags"] = [service.name]
        return operation


# --- one path per service ------------------------------------------------------------------

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
    return schema


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
    schema: dict[str, Any] = {"type": kind}
    low = getattr(field, "min_value", None)
    high = getattr(field, "max_value", None)
    if low is None and default_range is not None:
        low = default_range[0]
    if high is None and default_range is not None:
        high = default_range[1]
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema


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
    from django_report_export.formats import format_names

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
                "items": {"type": "string", "enum": list(service.fields)},
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
        *filter_parameters(service),
    ]


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


class ReportSchemaGenerator(SchemaGenerator):
    """drf-spectacular's generator, with the report endpoints on one path per service.

    Each ``report/{service}/...`` endpoint becomes ``report/<name>/...`` for every registered
    service, described by ``service_parameters``. The schema is built once per URLconf,
    registry, format registry, API version and language (building it walks every service's
    FilterSet), and again after a settings change.
    """

    _cache: dict[Any, Any] = {}
    _lock = threading.Lock()

    def _get_paths_and_endpoints(self) -> list[tuple[str, str, str, Any]]:
        """The endpoints, each report one once per service, grouped by service."""
        from django_report_export.registry import site

        endpoints = []
        per_service: dict[str, list[tuple[str, str, str, Any]]] = {
            name: [] for name in site.names()
        }
        generic: Any = self.endpoints  # (path, regex, method, callback) in drf-spectacular
        for path, path_regex, method, callback in generic:
            if "{service}" not in path or not is_report_view(callback):
                view = self.create_view(callback, method)
                endpoints.append((self.coerce_path(path, method, view), path_regex, method, view))
                continue
            for service in site:
                view = self.create_view(callback, method)
                view.service = service
                view.kwargs = {"service": service.name}
                service_path = path.replace("{service}", service.name)
                per_service[service.name].append((service_path, path_regex, method, view))
        for service_endpoints in per_service.values():
            endpoints.extend(service_endpoints)
        return endpoints

    def get_schema(self, request: Any = None, public: bool = False) -> Any:
        if not public:  # filtered by the requesting user's permissions: not shared
            return super().get_schema(request=request, public=public)
        key = self.cache_key()
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            cached = super().get_schema(request=request, public=public)
            with self._lock:
                self._cache[key] = cached
        return copy.deepcopy(cached)

    def cache_key(self) -> Any:
        from django.conf import settings

        from django_report_export.formats import format_names
        from django_report_export.registry import site

        services = tuple((service.name, type(service), id(service)) for service in site)
        urlconf = self.urlconf or settings.ROOT_URLCONF
        return (
            urlconf if isinstance(urlconf, str) else id(urlconf),
            id(self.patterns) if self.patterns is not None else None,
            services,
            tuple(format_names()),
            self.api_version,
            get_language(),
        )

    @classmethod
    def clear_cache(cls, **kwargs: Any) -> None:
        with cls._lock:
            cls._cache.clear()


setting_changed.connect(ReportSchemaGenerator.clear_cache)


def is_report_view(callback: Any) -> bool:
    """Whether ``callback`` is a view of the reporter API (``ReportViewSet`` or a subclass),
    told by its marker so that the schema never imports the views that import it."""
    view_class = getattr(callback, "cls", None)
    return isinstance(view_class, type) and getattr(view_class, "report_export_api", False)


class ServiceNames(Sequence[str]):
    """The registered service names, read when the schema is generated (after autodiscovery),
    not when this module is imported."""

    def _names(self) -> list[str]:
        from django_report_export.registry import site

        return site.names()

    def __getitem__(self, index: Any) -> Any:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def document(viewset: type) -> type:
    if extend_schema_view is None:
        return viewset
    endpoints = _endpoints()
    viewset.unrouted = extend_schema(exclude=True)(viewset.unrouted)  # type: ignore[attr-defined]
    for name in endpoints:
        # The base class extend_schema builds on, for every endpoint (see ReportAutoSchema).
        method = getattr(viewset, name)
        method.kwargs = {**getattr(method, "kwargs", {}), "schema": ReportAutoSchema}
    return extend_schema_view(**endpoints)(viewset)


#: What GET download answers 200 with, per content type: the built-in formats' files, a
#: gzip-compressed file, and the default of a project's own format writers.
DOWNLOAD_MEDIA_TYPES: dict[str, Any] = {
    "text/csv": {"type": "string"},
    "application/json": {"type": "array", "items": {"type": "object"}},
    "application/xml": {"type": "string"},
    "application/gzip": {"type": "string", "format": "binary"},
    "application/octet-stream": {"type": "string", "format": "binary"},
}


def _error(description: str) -> Any:
    return OpenApiResponse(ErrorSerializer, description=description)


def _endpoints() -> dict[str, Any]:
    from rest_framework import serializers

    service = OpenApiParameter(
        "service",
        OpenApiTypes.STR,
        OpenApiParameter.PATH,
        enum=ServiceNames(),
        description=(
            "Service name as listed by GET report/ (camelCase), e.g. `order`. Any other name "
            "is a 400 `unknown_service`."
        ),
    )
    common = {
        400: _error("The service is unknown (`unknown_service`)."),
        401: _error(
            "Not logged in (`not_authenticated`), or without the service's read permission "
            "(`permission_denied`); carries WWW-Authenticate."
        ),
        403: _error("Without the read permission, when PERMISSION_DENIED_STATUS is 403."),
        503: _error("Redis did not answer or return a status (`internalError`)."),
    }
    stop_errors = {
        **common,
        503: _error(
            "Redis did not answer, a status write failed, or the running export did not "
            "acknowledge within CANCEL_TIMEOUT (`internalError`)."
        ),
    }

    def action(summary: str, responses: dict[Any, Any], **kwargs: Any) -> Any:
        return extend_schema(
            summary=summary,
            parameters=[service, *kwargs.pop("parameters", [])],
            request=kwargs.pop("request", None),
            responses=responses,
            tags=["report"],
            **kwargs,
        )

    return {
        "list": extend_schema(
            summary="Services the caller may read, with formats and current status",
            responses={
                200: ServiceSerializer(many=True),
                401: common[401],
                503: common[503],
            },
            tags=["report"],
        ),
        "status": action(
            "Current status of the service's export", {200: StatusSerializer, **common}
        ),
        "start": action(
            "Start an export (an export already in progress is canceled first)",
            {
                202: StatusSerializer,
                **common,
                400: _error(
                    "Unknown service (`unknown_service`); missing or unsupported format, unknown "
                    "query parameter, unknown field or invalid filter value (`invalid`, with "
                    "`errors` naming each parameter)."
                ),
                415: _error(
                    "A request body that is neither JSON nor a form (`unsupported_media_type`)."
                ),
                503: _error(
                    "Redis did not answer or a status write failed, or the export in progress "
                    "did not stop within CANCEL_TIMEOUT (`internalError`); or the job could "
                    "not be queued (`Service currently unavailable`)."
                ),
            },
            parameters=[
                OpenApiParameter(
                    "format",
                    OpenApiTypes.STR,
                    OpenApiParameter.QUERY,
                    required=True,
                    enum=["csv", "json", "xml"],
                    description="Export format; must be one of the service's formats.",
                ),
                OpenApiParameter(
                    "fields",
                    OpenApiTypes.STR,
                    OpenApiParameter.QUERY,
                    description="Comma-separated subset of the service's fields, in order.",
                ),
                OpenApiParameter(
                    "compression",
                    OpenApiTypes.STR,
                    OpenApiParameter.QUERY,
                    enum=["none", "gzip"],
                ),
            ],
            description=(
                "The service's filters (listed by GET report/) are further query parameters. "
                "Any other query parameter is a 400."
            ),
        ),
        "pause": action(
            "Pause the running export (waits for the worker to stop)",
            {200: StatusSerializer, 404: _error("Nothing is starting or running."), **stop_errors},
        ),
        "resume": action(
            "Resume the paused export",
            {200: StatusSerializer, 404: _error("Nothing is paused."), **common},
        ),
        "cancel": action(
            "Cancel the export (waits for the worker to stop)",
            {
                200: StatusSerializer,
                404: _error("Nothing is starting, running or paused."),
                **stop_errors,
            },
        ),
        "download": action(
            "Download the finished file",
            {
                **{
                    (200, media_type): OpenApiResponse(
                        schema,
                        description=(
                            "The file, as an attachment, with its format's content type "
                            "(`application/gzip` when compressed)."
                        ),
                    )
                    for media_type, schema in DOWNLOAD_MEDIA_TYPES.items()
                },
                302: OpenApiResponse(description="Redirect to the storage's URL (DOWNLOAD)."),
                404: _error("No finished export (or its file is gone)."),
                **common,
                400: _error("Unknown service, or `id` is not an export id."),
            },
            parameters=[
                OpenApiParameter(
                    "id",
                    OpenApiTypes.UUID,
                    OpenApiParameter.QUERY,
                    description="A finished export of this service from the history.",
                )
            ],
        ),
        "history": action(
            "Past exports of the service, newest first",
            {
                200: inline_serializer(
                    "PaginatedHistory",
                    {
                        "count": serializers.IntegerField(),
                        "next": serializers.URLField(allow_null=True),
                        "previous": serializers.URLField(allow_null=True),
                        "results": HistorySerializer(many=True),
                    },
                ),
                404: _error("No such page."),
                **common,
            },
            parameters=[
                OpenApiParameter("page", OpenApiTypes.INT, OpenApiParameter.QUERY),
                OpenApiParameter("page_size", OpenApiTypes.INT, OpenApiParameter.QUERY),
            ],
        ),
    }
