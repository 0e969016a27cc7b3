from __future__ import annotations

from typing import Any

from django_report_export.readers.base import Chunk, ChunkReader


class OrmChunkReader(ChunkReader):
    """The generic reader: ``values_list`` of one keyset chunk, encoded by the writer."""

    def read(self, after: Any, limit: int, *, first: bool) -> Chunk:
        rows = list(self.after(after).values_list("pk", *self.fields)[:limit])
        if not rows:
            return Chunk(b"", 0, None)
        data = self.writer.encode_rows([row[1:] for row in rows], first=first)
        return Chunk(data, len(rows), rows[-1][0])
