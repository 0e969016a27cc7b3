from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from django.db.models import QuerySet

from django_report_export.formats.base import ChunkRows, FormatWriter


@dataclass(frozen=True)
class Chunk:
    #: The encoded rows, ready to append to the file.
    data: bytes
    #: How many rows they hold.
    count: int
    #: Primary key of the last row (the checkpoint); ``None`` when ``count`` is 0.
    last_key: Any
    #: Bytes that follow ``data``, made as they are taken, once: a document's collections
    #: read in batches (``readers/documents.py``), so a chunk is never held whole.
    more: Iterable[bytes] = ()

    def pieces(self) -> Iterator[bytes]:
        """The chunk's bytes, in order: ``data``, then ``more``."""
        yield self.data
        yield from self.more


class ChunkReader:
    """Reads the rows after a key, in primary-key order, and encodes them.

    ``queryset`` is already filtered and ordered by ``pk``; ``first`` is true when no row
    has been written before (the writer needs it, e.g. for JSON commas).
    """

    #: The read path, as the export records it (``ReportExport.reader``).
    name: ClassVar[str] = "generic"

    def __init__(self, queryset: QuerySet[Any], fields: list[Any], writer: FormatWriter) -> None:
        self.queryset = queryset
        self.fields = fields
        self.writer = writer

    def read(self, after: Any, limit: int, *, first: bool) -> Chunk:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the reader holds (connections, a prefetched chunk); called once."""

    def after(self, key: Any) -> QuerySet[Any]:
        return self.queryset if key is None else self.queryset.filter(pk__gt=key)


def in_zone(chunk: ChunkRows, zone: datetime.tzinfo) -> ChunkRows:
    """``chunk`` with its aware datetimes in ``zone`` (the export's ``timezone`` option); naive
    ones, and every other value, as they are."""
    replaced = {}
    for index in range(chunk.width):
        column = chunk.column(index)
        if any(issubclass(cls, datetime.datetime) for cls in set(map(type, column))):
            replaced[index] = [_in_zone(value, zone) for value in column]
    return chunk.replace(replaced) if replaced else chunk


def _in_zone(value: Any, zone: datetime.tzinfo) -> Any:
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(zone)
    return value
