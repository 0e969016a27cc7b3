"""Export services of the keyed models, registered by the tests that use them (they are not
``report_exports`` modules: the demo shop's 16 services are the ones autodiscovered), and
``orderRow``, the demo's orders as flat rows, registered at start-up (``apps.py``)."""

from __future__ import annotations

from django_report_export.registry import ExportService
from testproject.shop.filters import OrderFilter
from testproject.shop.models import Order

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


class OrderRowExport(ExportService):
    """The demo's orders as flat rows (the demo's ``order`` service is a document): the
    tests of the fast path, of xlsx, of options, shards and faults export these."""

    model = Order
    fields = (
        "id",
        "number",
        "created_at",
        "status",
        "customer__email",
        "customer__first_name",
        "customer__last_name",
        "currency",
        "subtotal",
        "total",
        "item_count",
        "payment_method",
        "shipping_country",
        "paid_at",
        "note",
    )
    formats = ("json", "xml", "xlsx", "jsonl")
    filterset_class = OrderFilter
    description = "Orders with customer, totals and payment, one flat row each."
    incremental_field = "created_at"
