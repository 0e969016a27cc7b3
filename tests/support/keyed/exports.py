"""Export services of the keyed models, registered by the tests that use them (they are not
``report_exports`` modules: the demo shop's 16 services are the ones autodiscovered), and
``orderRow``, the demo's orders as flat rows, registered at start-up (``apps.py``)."""

from __future__ import annotations

from bench.exports import OrderRowExport as BenchOrderRowExport
from django_report_export.registry import ExportService

from .models import Counted, Named, Slugged

FORMATS = ("json", "csv", "xml")


class SluggedExport(ExportService):
    model = Slugged
    fields = ("slug", "title", "rank")
    formats = FORMATS


class NamedExport(ExportService):
    model = Named
    fields = ("name", "note", "rank")
    formats = FORMATS


class CountedExport(ExportService):
    model = Counted
    fields = ("id", "label", "rank")
    formats = FORMATS


SERVICES = {"slugged": SluggedExport, "named": NamedExport, "counted": CountedExport}


#: The service name of ``OrderRowExport``.
ORDER_ROW = "orderRow"


class OrderRowExport(BenchOrderRowExport):
    """The demo's orders as flat rows (the demo's ``order`` service is a document), the
    benchmark's service, with the formats the demo's ``order`` had (no csv): the tests of the
    fast path, of xlsx, of options, shards and faults export these."""

    formats = ("json", "xml", "xlsx", "jsonl")
