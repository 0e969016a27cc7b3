"""Splitting an export into shards: contiguous primary-key ranges of about equal size.

An export of more rows than ``SHARD_ROWS`` (or whose service or start asks for shards) is
split, by the job that first runs it, into K ranges (``plan``), each a ``ReportExportShard``
row. A format can be sharded if its chunks differ by a prefix only (``chunk_separator``): the
shards' parts are then joined, in key order, into one file.
"""

from __future__ import annotations

import math
from typing import Any

from django.db import router, transaction
from django.db.models import QuerySet

from django_report_export.conf import export_settings
from django_report_export.formats.base import FormatWriter
from django_report_export.keys import key_from_json, key_to_json
from django_report_export.models import ReportExport, ReportExportShard
from django_report_export.registry import ExportService


def shard_count(export: ReportExport, service: ExportService, total: int) -> int:
    """How many shards ``total`` rows of ``export`` are split into (1: not sharded)."""
    requested = export.shards if export.shards is not None else service.shards
    if requested is None:
        rows = export_settings.SHARD_ROWS
        requested = math.ceil(total / rows) if rows else 1
    return max(1, min(requested, export_settings.MAX_SHARDS, total))


def chunk_separator(writer: FormatWriter) -> bytes | None:
    """The bytes a writer puts between two chunks (a JSON comma), read off the writer itself;
    ``None`` if its chunks differ by more than a prefix, which sharding cannot assemble."""
    if not writer.shardable:
        return None
    row = [(None,) * len(writer.columns)]
    try:
        later, first = writer.encode_rows(row, first=False), writer.encode_rows(row, first=True)
    except Exception:  # a writer that refuses an all-NULL row: export unsharded
        return None
    if not later.endswith(first):
        return None
    return later[: len(later) - len(first)]


def plan(
    export: ReportExport,
    service: ExportService,
    queryset: QuerySet[Any],
    writer: FormatWriter,
    total: int,
) -> list[ReportExportShard]:
    """The export's shards: those planned before, else new ones if it is to be sharded.

    An export that was started unsharded and has written rows stays unsharded.
    """
    shards = list(export.shard_set.order_by("index"))
    if shards or export.checkpoint.get("processed") or export.checkpoint.get("parts"):
        return shards
    count = shard_count(export, service, total)
    if count < 2 or chunk_separator(writer) is None:
        return []
    keys = queryset.values_list("pk", flat=True)
    try:
        ends = [
            key_to_json(queryset.model, keys[total * index // count - 1])
            for index in range(1, count)
        ]
    except IndexError:  # rows were deleted since they were counted: export them unsharded
        return []
    bounds = [None, *ends, None]
    with transaction.atomic(using=router.db_for_write(ReportExportShard)):
        return ReportExportShard.objects.bulk_create(
            ReportExportShard(
                export=export, index=index, after_key=bounds[index], last_key=bounds[index + 1]
            )
            for index in range(count)
        )


def shard_queryset(queryset: QuerySet[Any], shard: ReportExportShard) -> QuerySet[Any]:
    model = queryset.model
    if shard.after_key is not None:
        queryset = queryset.filter(pk__gt=key_from_json(model, shard.after_key))
    if shard.last_key is not None:
        queryset = queryset.filter(pk__lte=key_from_json(model, shard.last_key))
    return queryset
