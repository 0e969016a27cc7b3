"""Chunk readers: how an export's rows become bytes, one keyset chunk at a time.

``get_reader`` picks the reader for an export. The ORM reader works on every database; on
PostgreSQL, while ``FAST_PATH`` is on, the PostgreSQL reader takes over the exports it can
write byte for byte as the ORM reader would (``readers/fast_path.py`` decides which).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.db import connections
from django.db.models import QuerySet

from django_report_export.conf import export_settings
from django_report_export.formats.base import FormatWriter
from django_report_export.readers.base import Chunk, ChunkReader
from django_report_export.readers.fast_path import postgres_reader
from django_report_export.readers.orm import OrmChunkReader

__all__ = ["Chunk", "ChunkReader", "OrmChunkReader", "get_reader"]


def get_reader(
    queryset: QuerySet[Any],
    fields: list[Any],
    writer: FormatWriter,
    transforms: Mapping[int, Callable[[Any], Any]] | None = None,
) -> ChunkReader:
    """The reader of ``fields`` (what ``values_list`` selects: paths or expressions), with
    ``transforms`` applied to the values of some columns (by position) in Python: an export
    with any takes the generic reader."""
    fast = export_settings.FAST_PATH and not transforms
    if fast and connections[queryset.db].vendor == "postgresql":
        reader = postgres_reader(queryset, fields, writer)
        if reader is not None:
            return reader
    return OrmChunkReader(queryset, fields, writer, transforms)
