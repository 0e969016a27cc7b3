"""Export services of the keyed models, registered by the tests that use them (they are not
``report_exports`` modules: the demo shop's 16 services stay the only ones at start-up)."""

from __future__ import annotations

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
