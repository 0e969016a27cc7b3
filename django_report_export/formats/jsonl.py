"""JSON Lines (NDJSON): one JSON object per line, each line ended by ``\\n``.

    {"id":1,"total":"12.50","created":"2024-05-01T10:00:00+00:00","note":null}
    {"id":2,"total":"7.00","created":"2024-05-01T10:05:00+00:00","note":"gift"}

The objects are those of ``json``, value for value (``JSONWriter`` encodes them); only the
array's brackets and the commas between objects are left out. An export without rows is an
empty file.
"""

from __future__ import annotations

from django_report_export.formats.json import JSONWriter


class JSONLinesWriter(JSONWriter):
    name = "jsonl"
    extension = "jsonl"
    content_type = "application/x-ndjson"
    object_separator = b"\n"
    chunk_end = b"\n"

    def header(self) -> bytes:
        return b""

    def footer(self, *, empty: bool) -> bytes:
        return b""
