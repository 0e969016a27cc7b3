from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from django_report_export.formats.base import FormatWriter


@dataclass(frozen=True)
class Chunk:
    #: The encoded rows, ready to append to the file.
    data: bytes
    #: How many rows they hold.
    count: int
    #: Primary key of the last row (the checkpoint); ``None`` when ``count`` is 0.
    last_key: Any


class ChunkReader:
    """Reads the rows after a key, in primary-key order, and encodes them.

    ``queryset`` is already filtered and ordered by ``pk``; ``first`` is true when no row
    has been written before (the writer needs it, e.g. for JSON commas).
    """

    def __init__(self, queryset: QuerySet[Any], fields: list[str], writer: FormatWriter) -> None:
        self.queryset = queryset
        self.fields = fields
        self.writer = writer

    def read(self, after: Any, limit: int, *, first: bool) -> Chunk:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the reader holds (connections, a prefetched chunk); called once."""

    def after(self, key: Any) -> QuerySet[Any]:
        return self.queryset if key is None else self.queryset.filter(pk__gt=key)
