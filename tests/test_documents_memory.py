"""A document's collections in flat memory (docs/declaring-services.md, "Collections"): one
order with 100,000 lines is exported, parsed back and compared with the ORM, its export's
peak memory within a few MB of the same order's with 1,000 lines (generic path, on every
database); and records with more items than a batch give the bytes they give in one."""

from __future__ import annotations

import json
import tracemalloc
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from django_report_export.columns import Collection, Column
from django_report_export.models import ReportExport, Status
from django_report_export.readers import documents
from django_report_export.registry import ExportService
from testproject.shop.factories import OrderFactory, TransactionFactory
from testproject.shop.models import Order, OrderLine, Transaction

from .test_columns import export_file
from .test_documents import OrderLinesCsv, document_reader, orders  # noqa: F401
from .test_readers import export_bytes
from .test_registry import registered  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)

#: How much more the export of 100,000 lines may take at its peak than that of 1,000.
FLAT_BYTES = 3 * 1024 * 1024


class OrderLinesDocument(ExportService):
    model = Order
    formats = ["json", "xml"]
    fields = [
        "id",
        "number",
        Collection("lines", "lines", ["sku", "quantity", Column("total", "line_total")]),
        Collection("payments", "transactions", ["reference", "amount"], order_by=["-amount"]),
    ]


def add_lines(order: Order, start: int, stop: int) -> None:
    OrderLine.objects.bulk_create(
        (
            OrderLine(
                order=order,
                sku=f"L{number:06d}",
                title="line",
                quantity=number % 7,
                unit_price=Decimal("1.50"),
                line_total=Decimal(number) / 100,
            )
            for number in range(start, stop)
        ),
        batch_size=5_000,
    )


def expected() -> list[dict[str, Any]]:
    """The documents, from the ORM, as JSON writes them."""
    return [
        {
            "id": order.pk,
            "number": order.number,
            "lines": [
                {"sku": sku, "quantity": quantity, "total": str(total)}
                for sku, quantity, total in OrderLine.objects.filter(order=order)
                .order_by("pk")
                .values_list("sku", "quantity", "line_total")
            ],
            "payments": [
                {"reference": reference, "amount": str(amount)}
                for reference, amount in Transaction.objects.filter(order=order)
                .order_by("-amount", "pk")
                .values_list("reference", "amount")
            ],
        }
        for order in Order.objects.order_by("pk")
    ]


def export_peak(api: Any, worker: Any, export_format: str) -> tuple[int, list[dict[str, Any]]]:
    """The peak of the memory the export job allocates (``tracemalloc``), and its documents
    parsed back (XML's values as their texts)."""
    response = api.post(f"/api/report/orderLinesDocument/start?format={export_format}")
    assert response.status_code == 202, response.content
    tracemalloc.start()
    try:
        worker()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    export = ReportExport.objects.get()
    assert export.status == Status.FINISHED
    assert export.reader == "generic"
    data = b"".join(api.get("/api/report/orderLinesDocument/download").streaming_content)
    ReportExport.objects.all().delete()
    if export_format == "json":
        return peak, json.loads(data)
    return peak, [xml_document(element) for element in etree.fromstring(data)]


def xml_document(element: Any) -> dict[str, Any]:
    document: dict[str, Any] = {child.tag: child.text for child in element}
    for name in ("lines", "payments"):
        document[name] = [{value.tag: value.text for value in item} for item in element.find(name)]
    return document


def as_xml(document: dict[str, Any]) -> dict[str, Any]:
    """A document of ``expected()`` as its XML reads: every value its text."""
    return {
        name: [{key: str(v) for key, v in item.items()} for item in value]
        if isinstance(value, list)
        else str(value)
        for name, value in document.items()
    }


@pytest.mark.slow
@pytest.mark.parametrize("export_format", ["json", "xml"])
def test_one_order_with_100000_lines_is_exported_in_flat_memory(
    api: Any,
    worker: Any,
    settings: Any,
    registered: Any,  # noqa: F811
    export_format: str,
) -> None:
    # The generic path on PostgreSQL too, and chunks of a few orders around the long one.
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "FAST_PATH": False, "CHUNK_SIZE": 4}
    registered("orderLinesDocument", OrderLinesDocument)
    placed = OrderFactory.create_batch(9)
    long = placed[5]
    for index, order in enumerate(placed):
        if order != long:
            add_lines(order, index * 10, index * 10 + index % 3)
        for _ in range(index % 3):
            TransactionFactory(order=order)
    add_lines(long, 1_000_000, 1_001_000)
    shown = (lambda documents: documents) if export_format == "json" else as_xml
    little, documents = export_peak(api, worker, export_format)
    assert documents == [shown(document) for document in expected()]
    add_lines(long, 1_001_000, 1_100_000)
    assert OrderLine.objects.filter(order=long).count() == 100_000
    peak, documents = export_peak(api, worker, export_format)
    assert documents == [shown(document) for document in expected()]
    assert peak - little < FLAT_BYTES, (little, peak)


@pytest.mark.parametrize("export_format", ["json", "jsonl", "xml"])
def test_items_written_in_batches_give_the_bytes_of_one(
    monkeypatch: Any,
    orders: list[Order],  # noqa: F811
    export_format: str,
) -> None:
    whole = export_bytes(document_reader(export_format), 4)
    for size in (1, 2):
        monkeypatch.setattr(documents, "ITEMS_BATCH", size)
        assert export_bytes(document_reader(export_format), 4) == whole
        assert export_bytes(document_reader(export_format), 1) == whole
    if export_format == "xml":
        etree.fromstring(whole)


def test_a_flattened_csv_in_batches_gives_the_bytes_of_one(
    api: Any,
    worker: Any,
    monkeypatch: Any,
    orders: list[Order],  # noqa: F811
    registered: Any,  # noqa: F811
) -> None:
    registered("orderLinesCsv", OrderLinesCsv)
    whole = export_file(api, worker, "orderLinesCsv", "format=csv")
    ReportExport.objects.all().delete()
    monkeypatch.setattr(documents, "ITEMS_BATCH", 1)
    assert export_file(api, worker, "orderLinesCsv", "format=csv") == whole


def test_a_pause_keeps_a_long_record_whole(
    api: Any,
    worker: Any,
    settings: Any,
    monkeypatch: Any,
    orders: list[Order],  # noqa: F811
) -> None:
    from .support.polling import paused_and_resumed

    OrderFactory.create_batch(20)
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 3, "CHECKPOINT_INTERVAL": 0}
    uninterrupted = export_file(api, worker, "orderDocument", "format=xml")
    ReportExport.objects.all().delete()
    monkeypatch.setattr(documents, "ITEMS_BATCH", 1)
    paused_at, resumed = paused_and_resumed(api, worker, "orderDocument", "format=xml", 9)
    assert 9 <= paused_at <= 30
    assert resumed == uninterrupted


@pytest.mark.parametrize("order_by", [["product__name"], ["-product__name", "-quantity"]])
def test_batches_follow_an_order_with_nulls(
    monkeypatch: Any,
    orders: list[Order],  # noqa: F811
    registered: Any,  # noqa: F811
    order_by: list[str],
) -> None:
    # On MariaDB/MySQL each batch starts after the last one's sort key, nulls included.
    class OrderedLines(ExportService):
        model = Order
        formats = ["json"]
        fields = [
            "id",
            Collection(
                "lines", "lines", ["sku", Column("product", "product__name")], order_by=order_by
            ),
        ]

    registered("orderedLines", OrderedLines)
    service = OrderedLines()
    names = ["id", "lines"]

    def exported() -> bytes:
        from django_report_export.documents import reader_for
        from django_report_export.formats import get_writer_class

        writer = get_writer_class("json")("orderedLines", names)
        return export_bytes(reader_for(service, names, Order.objects.order_by("pk"), writer), 4)

    whole = exported()
    assert any(line["product"] is None for record in json.loads(whole) for line in record["lines"])
    monkeypatch.setattr(documents, "ITEMS_BATCH", 1)
    assert exported() == whole
