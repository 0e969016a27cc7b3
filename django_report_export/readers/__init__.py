"""Chunk readers: how an export's rows become bytes, one keyset chunk at a time.

``get_reader`` picks the reader for an export. The ORM reader works on every database;
a database-specific reader may take over where it writes the same bytes faster.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from django_report_export.formats.base import FormatWriter
from django_report_export.readers.base import Chunk, ChunkReader
from django_report_export.readers.orm import OrmChunkReader

__all__ = ["Chunk", "ChunkReader", "OrmChunkReader", "get_reader"]


def get_reader(queryset: QuerySet[Any], fields: list[str], writer: FormatWriter) -> ChunkReader:
    return OrmChunkReader(queryset, fields, writer)
