"""The OpenAPI description of each endpoint of the reporter API: ``document`` decorates the
viewset with it (without drf-spectacular it changes nothing). Every status code, content type
and body an endpoint answers with is described here."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from rest_framework import serializers

from django_report_export.api.schema.generator import ReportAutoSchema
from django_report_export.api.schema.parameters import option_description, option_schema
from django_report_export.api.serializers import (
    ErrorSerializer,
    HistorySerializer,
    ServiceSerializer,
    StatusSerializer,
)
from django_report_export.options import OPTIONS
from django_report_export.registry import site

try:
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


class ServiceNames(Sequence[str]):
    """The registered service names, read when the schema is generated (after autodiscovery),
    not when this module is imported."""

    def _names(self) -> list[str]:
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
                *(
                    OpenApiParameter(
                        name,
                        OpenApiTypes.BOOL if name == "bom" else OpenApiTypes.STR,
                        OpenApiParameter.QUERY,
                        enum=option_schema(name).get("enum"),
                        description=option_description(name),
                    )
                    for name in OPTIONS
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
        "retry": action(
            "Continue the export in Error from its last checkpoint, with a new run",
            {
                202: StatusSerializer,
                404: _error("Nothing is in Error."),
                **common,
                503: _error(
                    "Redis did not answer or a status write failed (`internalError`); or the "
                    "job could not be queued (`Service currently unavailable`)."
                ),
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
                206: OpenApiResponse(
                    description=(
                        "The byte range asked for by `Range` (one range: `bytes=a-b`, `a-`, "
                        "`-n`), with `Content-Range`."
                    )
                ),
                302: OpenApiResponse(description="Redirect to the storage's URL (DOWNLOAD)."),
                304: OpenApiResponse(description="`If-None-Match` names the file's `ETag`."),
                416: _error("The range starts beyond the file (`range_not_satisfiable`)."),
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
