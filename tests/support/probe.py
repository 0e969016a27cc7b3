"""Format writers that record when they encode, for the concurrency test.

The live server and workers of ``test_concurrency`` serve ``csv``, ``json`` and ``xml`` with
these subclasses (through the ``FORMATS`` setting). Each writes the very same bytes as the
built-in writer and appends one line per encoded chunk to ``$REPORT_EXPORT_PROBE_DIR/<pid>``:
``<writer> <service> <first id> <last id> <start> <end>``. A writer belongs to one run of one
export (``ExportRun`` makes one per run), so the lines show when each run wrote rows, in
which process, and which rows: two runs of one slot whose chunks interleave in time would be
two jobs writing one slot at once.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from typing import Any

from django_report_export.formats import CSVWriter, JSONWriter, XMLWriter
from django_report_export.formats.base import Row

PROBE_DIR_VARIABLE = "REPORT_EXPORT_PROBE_DIR"
_serial = itertools.count()


class ProbeMixin:
    service: str
    columns: list[str]

    def __init__(self, service: str, columns: Sequence[str]) -> None:
        super().__init__(service, columns)  # type: ignore[call-arg]
        self.probe_id = f"{os.getpid()}.{next(_serial)}"

    def encode_rows(self, rows: Sequence[Row], *, first: bool) -> bytes:
        began = time.time()
        data: bytes = super().encode_rows(rows, first=first)  # type: ignore[misc]
        ended = time.time()
        folder = os.environ.get(PROBE_DIR_VARIABLE)
        if folder and rows:
            position = self.columns.index("id") if "id" in self.columns else None
            first_id = rows[0][position] if position is not None else "-"
            last_id = rows[-1][position] if position is not None else "-"
            line = f"{self.probe_id} {self.service} {first_id} {last_id} {began:.6f} {ended:.6f}\n"
            with open(os.path.join(folder, str(os.getpid())), "a") as log:
                log.write(line)
        return data


class ProbeCSVWriter(ProbeMixin, CSVWriter):
    pass


class ProbeJSONWriter(ProbeMixin, JSONWriter):
    pass


class ProbeXMLWriter(ProbeMixin, XMLWriter):
    pass


FORMATS = {
    "csv": "tests.support.probe.ProbeCSVWriter",
    "json": "tests.support.probe.ProbeJSONWriter",
    "xml": "tests.support.probe.ProbeXMLWriter",
}


def read_probe(folder: Any) -> list[tuple[str, str, str, str, float, float]]:
    """The probe's lines; row ids as text (inquiries are keyed by UUIDs)."""
    records = []
    for path in sorted(os.listdir(folder)):
        with open(os.path.join(folder, path)) as log:
            for line in log:
                writer, service, first_id, last_id, began, ended = line.split()
                records.append((writer, service, first_id, last_id, float(began), float(ended)))
    return records
