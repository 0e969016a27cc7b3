"""Serializers describing the bodies of the report endpoints, for the schema and the
browsable API's forms; the bodies themselves are built by ``presentation``."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from django_report_export.models import Status


class StatusSerializer(serializers.Serializer[Any]):
    """Describes the status body (for the schema); bodies are built by ``status_body``."""

    service = serializers.CharField()
    id = serializers.UUIDField(allow_null=True)
    status = serializers.ChoiceField(choices=Status.choices)
    status_name = serializers.CharField()
    format = serializers.CharField(allow_null=True)
    compression = serializers.CharField(allow_null=True)
    filters = serializers.DictField(allow_null=True)
    fields = serializers.ListField(  # type: ignore[assignment]
        child=serializers.CharField(), allow_null=True
    )
    options = serializers.DictField(
        allow_null=True,
        help_text="The file options, resolved at start: the CSV ones for a CSV export (delimiter, "
        "bom, line_ending, decimal_separator, header), timezone for every format.",
    )
    window = serializers.DictField(
        allow_null=True,
        help_text="The incremental window, fixed at start: {field, from, to}, the rows whose "
        "field is at or after from (null: unbounded) and before to; null without a window.",
    )
    processed = serializers.IntegerField()
    total = serializers.IntegerField(allow_null=True)
    progress = serializers.FloatField(min_value=0, max_value=100)
    rows_per_second = serializers.FloatField(allow_null=True)
    eta_seconds = serializers.IntegerField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)
    file = serializers.URLField(allow_null=True)
    file_size = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField(allow_null=True, help_text="Hex SHA-256 of the file.")
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="When the cleanup command removes the file (RETENTION_DAYS)."
    )
    error = serializers.CharField(allow_null=True)


class HistorySerializer(StatusSerializer):
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(allow_null=True)
    reader = serializers.CharField(
        allow_null=True,
        help_text="The read path that wrote the rows: postgresql-copy or generic.",
    )
    schedule = serializers.CharField(
        allow_null=True, help_text="The name of the schedule that started the export."
    )


class ColumnSerializer(serializers.Serializer[Any]):
    """One entry of a service's records (docs/declaring-services.md)."""

    name = serializers.CharField(help_text="The key in JSON, the XML element, the CSV header.")
    label = serializers.CharField(  # type: ignore[assignment]
        help_text="The human header, in the request's language."
    )
    kind = serializers.ChoiceField(
        choices=["value", "object", "list"],
        help_text="`value`; `object`, a nested object; `list`, a collection of objects.",
    )
    fields = serializers.ListField(  # type: ignore[assignment]
        child=serializers.JSONField(),
        required=False,
        help_text="An object's members or a list's items, described alike.",
    )


class ServiceSerializer(serializers.Serializer[Any]):
    service = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    formats = serializers.ListField(child=serializers.CharField())
    fields = serializers.ListField(child=serializers.CharField())  # type: ignore[assignment]
    columns = ColumnSerializer(many=True)
    filters = serializers.ListField(child=serializers.CharField())
    status = serializers.ChoiceField(choices=Status.choices)
    status_name = serializers.CharField()
    url = serializers.URLField()


class StartSerializer(serializers.Serializer[Any]):
    """The start form of the browsable API; the view validates the query parameters itself."""

    format = serializers.CharField(help_text="Export format; one of the service's formats.")
    fields = serializers.CharField(  # type: ignore[assignment]
        required=False, help_text="Comma-separated subset of the service's fields."
    )
    compression = serializers.ChoiceField(choices=["none", "gzip"], required=False)


class ErrorSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField()
    type = serializers.CharField()
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()), required=False
    )
