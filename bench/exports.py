"""``orderRow``: the demo's orders as flat rows, the service the benchmark exports by default.

The demo's ``order`` service is a document (addresses, lines and payments nested in each
order), which neither ``COPY`` nor the naive loops, xlsx nor django-import-export write; the
benchmark measures what they all can: the order's own columns and two of its customer's, one
row per order (the fields ``order`` had before it became a document, as the suite's twin in
``tests/support/keyed`` has them)."""

from __future__ import annotations

from django_report_export.registry import ExportService
from testproject.shop.filters import OrderFilter
from testproject.shop.models import Order

ORDER_ROW = "orderRow"


class OrderRowExport(ExportService):
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
    formats = ("json", "csv", "xml", "xlsx", "jsonl")
    filterset_class = OrderFilter
    description = "Orders with customer, totals and payment, one flat row each."
    incremental_field = "created_at"
