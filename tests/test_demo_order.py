"""The demo shop's ``order`` service is a document (SPEC §8): the seeded orders exported through
the API by a burst worker in JSON, JSON Lines and XML, parsed back and compared with the ORM
(every order, line, payment and address; decimals as their exact text; choices by label), its
field selection, its refusals, and the same bytes after a pause."""

from __future__ import annotations

import io
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from lxml import etree

from django_report_export.models import ReportExport, Status
from testproject.shop.factories import OrderFactory, TransactionFactory
from testproject.shop.models import Address, Order, OrderLine, Transaction

from .support.polling import paused_and_resumed
from .test_columns import export_file

pytestmark = pytest.mark.django_db(transaction=True)

TOP = [
    "id",
    "number",
    "created_at",
    "status",
    "customer_email",
    "customer_first_name",
    "customer_last_name",
    "currency",
    "subtotal",
    "shipping",
    "tax",
    "total",
    "net",
    "item_count",
    "payment_method",
    "paid_at",
    "note",
    "billing_address",
    "shipping_address",
    "lines",
    "payments",
]
ADDRESS = ["name", "company", "street", "postal_code", "city", "country"]
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@pytest.fixture
def shop() -> None:
    """The seeded demo (lines, addresses, payments), and an order without lines, without a
    shipping or billing address, with a charge and a refund."""
    call_command("seed_shop", orders=40, products=12, seed=5, stdout=io.StringIO())
    bare = OrderFactory(billing_address=None, shipping_address=None, note="")
    TransactionFactory(order=bare, kind="charge", status="succeeded")
    TransactionFactory(order=bare, kind="refund", status="succeeded")


def address(row: Address | None) -> dict[str, str] | None:
    return None if row is None else {name: getattr(row, name) for name in ADDRESS}


def moment(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def expected() -> list[dict[str, Any]]:
    """The orders, from the ORM, as the JSON writer writes them (decimals as their text)."""
    documents = []
    orders = Order.objects.select_related("customer", "billing_address", "shipping_address")
    for order in orders.order_by("pk"):
        lines = OrderLine.objects.filter(order=order).order_by("pk")
        payments = Transaction.objects.filter(order=order).order_by("created_at", "pk")
        documents.append(
            {
                "id": order.pk,
                "number": order.number,
                "created_at": moment(order.created_at),
                "status": order.get_status_display(),
                "customer_email": order.customer.email,
                "customer_first_name": order.customer.first_name,
                "customer_last_name": order.customer.last_name,
                "currency": order.currency,
                "subtotal": str(order.subtotal),
                "shipping": str(order.shipping),
                "tax": str(order.tax),
                "total": str(order.total),
                "net": str(order.total - order.tax),
                "item_count": order.item_count,
                "payment_method": order.get_payment_method_display(),
                "paid_at": moment(order.paid_at),
                "note": order.note,
                "billing_address": address(order.billing_address),
                "shipping_address": address(order.shipping_address),
                "lines": [
                    {
                        "sku": line.sku,
                        "title": line.title,
                        "quantity": line.quantity,
                        "unit_price": str(line.unit_price),
                        "tax_rate": str(line.tax_rate),
                        "line_total": str(line.line_total),
                    }
                    for line in lines
                ],
                "payments": [
                    {
                        "reference": payment.reference,
                        "kind": payment.get_kind_display(),
                        "provider": payment.get_provider_display(),
                        "amount": str(payment.amount),
                        "currency": payment.currency,
                        "status": payment.get_status_display(),
                        "created_at": moment(payment.created_at),
                    }
                    for payment in payments
                ],
            }
        )
    return documents


def keys(value: Any) -> list[str]:
    """Every key of a JSON value, at any depth."""
    if isinstance(value, dict):
        return [*value, *(key for inner in value.values() for key in keys(inner))]
    if isinstance(value, list):
        return [key for inner in value for key in keys(inner)]
    return []


def test_the_seeded_orders_are_documents_of_their_lines_payments_and_addresses(
    api: Any, worker: Any, shop: None
) -> None:
    documents = json.loads(export_file(api, worker, "order", "format=json"))
    assert documents == expected()
    assert [list(document) for document in documents] == [TOP] * len(documents)
    assert len(documents) == 41
    assert sum(len(document["lines"]) for document in documents) == OrderLine.objects.count()
    assert sum(len(d["payments"]) for d in documents) == Transaction.objects.count()
    assert any(document["lines"] == [] for document in documents)
    assert any(document["shipping_address"] is None for document in documents)
    assert any(document["billing_address"] is None for document in documents)
    assert any(len(document["lines"]) > 2 for document in documents)
    assert any(len(document["payments"]) == 2 for document in documents)
    assert {document["status"] for document in documents} <= set(Order.Status.labels)
    assert "Credit card" in {document["payment_method"] for document in documents}
    assert not [key for key in keys(documents) if "__" in key]
    fast_path = "postgresql-copy" if connection.vendor == "postgresql" else "generic"
    assert ReportExport.objects.get().reader == fast_path


def test_json_lines_hold_one_order_document_a_line(api: Any, worker: Any, shop: None) -> None:
    lines = export_file(api, worker, "order", "format=jsonl").decode().splitlines()
    assert [json.loads(line) for line in lines] == expected()


def xml_text(value: Any) -> str | None:
    """An element's text as lxml reads it back: forbidden characters as U+FFFD, empty text
    as ``None``."""
    text = XML_FORBIDDEN.sub("\ufffd", str(value))
    return text or None


def xml_fields(element: Any, document: dict[str, Any]) -> None:
    """The children of ``element`` are the members of ``document``, in order (a null absent)."""
    assert [child.tag for child in element] == [
        name for name, value in document.items() if value is not None
    ]
    for child in element:
        value = document[child.tag]
        if isinstance(value, dict):
            xml_fields(child, value)
        elif isinstance(value, list):
            item = {"lines": "line", "payments": "payment"}[child.tag]
            assert [inner.tag for inner in child] == [item] * len(value)
            for inner, member in zip(child, value, strict=True):
                xml_fields(inner, member)
        else:
            assert child.text == xml_text(value), (child.tag, value)


def test_the_xml_documents_hold_wrappers_of_lines_and_payments(
    api: Any, worker: Any, shop: None
) -> None:
    root = etree.fromstring(export_file(api, worker, "order", "format=xml"))
    documents = expected()
    assert len(root) == len(documents)
    for element, document in zip(root, documents, strict=True):
        xml_fields(element, document)
    empty = next(e for e, d in zip(root, documents, strict=True) if not d["lines"])
    assert empty.find("lines") is not None
    assert len(empty.find("lines")) == 0
    assert empty.find("shipping_address") is None


def test_fields_select_a_column_and_a_whole_collection(api: Any, worker: Any, shop: None) -> None:
    data = export_file(api, worker, "order", "format=json&fields=id,lines")
    assert json.loads(data) == [
        {"id": document["id"], "lines": document["lines"]} for document in expected()
    ]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("format=csv", "csv"),
        ("format=xlsx", "xlsx"),
        ("format=json&fields=id,customer__email", "customer__email"),
        ("format=json&fields=id,lines__sku", "lines__sku"),
    ],
)
def test_what_an_order_document_is_not_is_a_400(api: Any, query: str, named: str) -> None:
    response = api.post(f"/api/report/order/start?{query}")
    assert response.status_code == 400
    assert named in json.dumps(response.json())
    assert not ReportExport.objects.exists()


def test_filters_and_windows_narrow_the_documents(api: Any, worker: Any, shop: None) -> None:
    refunded = [d for d in expected() if d["status"] == "Refunded"]
    data = export_file(api, worker, "order", "format=json&status=refunded")
    assert json.loads(data) == refunded
    newest = Order.objects.order_by("-created_at")[5].created_at
    query = f"format=jsonl&from={newest.isoformat().replace('+', '%2B')}"
    lines = export_file(api, worker, "order", query).decode().splitlines()
    numbers = [json.loads(line)["number"] for line in lines]
    assert sorted(numbers) == sorted(
        Order.objects.filter(created_at__gte=newest).values_list("number", flat=True)
    )


@pytest.mark.parametrize("export_format", ["json", "xml", "jsonl"])
def test_a_paused_order_export_resumes_to_the_same_bytes(
    api: Any, worker: Any, settings: Any, shop: None, export_format: str
) -> None:
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 3, "CHECKPOINT_INTERVAL": 0}
    query = f"format={export_format}"
    uninterrupted = export_file(api, worker, "order", query)
    paused_at, resumed = paused_and_resumed(api, worker, "order", query, 9)
    assert 9 <= paused_at <= 41
    assert resumed == uninterrupted


def test_the_seeded_totals_are_their_lines(shop: None) -> None:
    for order in Order.objects.prefetch_related("lines"):
        lines = list(order.lines.all())
        if not lines:
            continue
        assert order.subtotal == sum((line.line_total for line in lines), Decimal("0.00"))
        assert order.item_count == sum(line.quantity for line in lines)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the fast path is PostgreSQL's")
@pytest.mark.parametrize("export_format", ["json", "jsonl", "xml"])
def test_the_database_builds_the_demo_orders_byte_for_byte(shop, settings, export_format):
    from django_report_export.readers.postgres_documents import PostgresDocumentReader

    from .test_documents_fast_path import document_reader
    from .test_readers import export_bytes

    for chunk_size in (3, 5000):
        fast = document_reader("order", export_format, fast=True, settings=settings)
        assert isinstance(fast, PostgresDocumentReader)
        generic = document_reader("order", export_format, fast=False, settings=settings)
        assert export_bytes(fast, chunk_size) == export_bytes(generic, chunk_size)


@pytest.mark.slow
@pytest.mark.parametrize("export_format", ["json", "xml"])
def test_a_killed_workers_continuation_gives_the_same_documents(
    api, worker, settings, tmp_path, export_format
):
    """An rqworker killed in the middle of the orders: the worker that continues it from its
    checkpoint writes the file of an uninterrupted export, byte for byte."""
    from .support.workers import WorkerProcess, wait_for

    call_command("seed_shop", orders=600, products=12, seed=5, stdout=io.StringIO())
    query = f"/api/report/order/start?format={export_format}"
    assert api.post(query).status_code == 202
    worker()
    uninterrupted = b"".join(api.get("/api/report/order/download").streaming_content)

    failure = {
        "CHUNK_SIZE": 2,
        "CHECKPOINT_INTERVAL": 0,
        "HEARTBEAT_INTERVAL": 0.2,
        "STALE_AFTER": 1.5,
    }
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **failure}
    assert api.post(query).status_code == 202

    def status() -> Any:
        return api.get("/api/report/order/status").json()

    with WorkerProcess(tmp_path / "worker-1.log", **failure) as first:
        wait_for(lambda: status()["processed"] >= 150)
        first.kill()
    assert status()["status"] == Status.RUNNING
    assert status()["processed"] < 600
    with WorkerProcess(tmp_path / "worker-2.log", **failure):
        wait_for(lambda: status()["status"] != Status.RUNNING or None, timeout=60)
        wait_for(lambda: status()["status"] == Status.FINISHED, timeout=120)
    export = ReportExport.objects.get(status=Status.FINISHED, retries=1)
    assert export.processed == 600
    assert b"".join(api.get("/api/report/order/download").streaming_content) == uninterrupted
