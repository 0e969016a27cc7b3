"""Documents (docs/declaring-services.md): nested to-one objects and collections in JSON, JSON
Lines and XML, parsed back and compared with the ORM; one query per collection per chunk; the
same bytes after a pause; field selection by name; the checks that refuse what a document
cannot be written as."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from lxml import etree

from django_report_export.columns import Collection, Column, Nested
from django_report_export.documents import reader_for
from django_report_export.formats import get_writer_class
from django_report_export.models import ReportExport
from django_report_export.options import FileOptions
from django_report_export.registry import ExportService, site
from testproject.shop.factories import OrderFactory, ProductFactory, TransactionFactory
from testproject.shop.models import Address, Order, OrderLine, Transaction

from .support.polling import paused_and_resumed
from .test_api_schema import served_schema
from .test_columns import column_errors, export_file
from .test_readers import export_bytes
from .test_registry import registered  # noqa: F401  (the fixture)
from .test_shards import shard_runs

pytestmark = pytest.mark.django_db(transaction=True)

FIELDS: list[Any] = [
    "id",
    Column("ref", "number"),
    Column("status", display=True),
    "total",
    Nested("billing", "billing_address", ["name", "city", Column("land", "country")]),
    Nested("customer", "customer", ["email", Column("name", "last_name")]),
    Collection(
        "lines",
        "lines",
        [
            "sku",
            "quantity",
            "unit_price",
            Column("total", "line_total"),
            Nested("product", "product", ["sku", "name"]),
        ],
    ),
    Collection(
        "payments",
        "transactions",
        ["reference", "amount", Column("kind", display=True), "created_at"],
        order_by=["-created_at"],
        filter={"status": "succeeded"},
        item="payment",
    ),
]
F_CITY = F("city")
NAMES = [entry if isinstance(entry, str) else entry.name for entry in FIELDS]
#: The reader of a document in JSON or XML: on PostgreSQL the database builds it.
FAST_OR_GENERIC = "postgresql-copy" if connection.vendor == "postgresql" else "generic"


class OrderDocument(ExportService):
    model = Order
    fields = FIELDS
    formats = ["json", "xml", "jsonl"]


@pytest.fixture
def orders(registered: Any) -> list[Order]:  # noqa: F811
    registered("orderDocument", OrderDocument)
    product = ProductFactory()
    orders = OrderFactory.create_batch(10)
    for index, order in enumerate(orders):
        if index % 3:
            order.billing_address = Address.objects.create(
                name=f"Name {index}", street="Street 1", postal_code="1", city="Köln", country="DE"
            )
            order.save()
        for line in range(index % 4):
            OrderLine.objects.create(
                order=order,
                product=product if line % 2 else None,
                sku=f"S{index}-{line}",
                title="A <line> & more",
                quantity=line + 1,
                unit_price=Decimal("0.10") * (line + 1),
                line_total=Decimal("0.10") * (line + 1) ** 2,
            )
        for payment in range(index % 4):
            TransactionFactory(order=order, status="succeeded" if payment % 2 == 0 else "failed")
    return orders


def expected() -> list[dict[str, Any]]:
    """The documents, from the ORM, as JSON writes them (decimals as their exact text)."""
    records = []
    for order in Order.objects.select_related("billing_address", "customer").order_by("pk"):
        address = order.billing_address
        lines = OrderLine.objects.filter(order=order).select_related("product").order_by("pk")
        payments = Transaction.objects.filter(order=order, status="succeeded").order_by(
            "-created_at", "pk"
        )
        records.append(
            {
                "id": order.pk,
                "ref": order.number,
                "status": order.get_status_display(),
                "total": str(order.total),
                "billing": None
                if address is None
                else {"name": address.name, "city": address.city, "land": address.country},
                "customer": {"email": order.customer.email, "name": order.customer.last_name},
                "lines": [
                    {
                        "sku": line.sku,
                        "quantity": line.quantity,
                        "unit_price": str(line.unit_price),
                        "total": str(line.line_total),
                        "product": None
                        if line.product is None
                        else {"sku": line.product.sku, "name": line.product.name},
                    }
                    for line in lines
                ],
                "payments": [
                    {
                        "reference": payment.reference,
                        "amount": str(payment.amount),
                        "kind": payment.get_kind_display(),
                        "created_at": payment.created_at.isoformat(),
                    }
                    for payment in payments
                ],
            }
        )
    return records


def document_reader(export_format: str, names: list[str] = NAMES, options: Any = None) -> Any:
    service = site.get("orderDocument")
    writer = get_writer_class(export_format)("orderDocument", names)
    if options is not None:
        writer.options = options
    return reader_for(service, names, service.get_queryset().order_by("pk"), writer)


def test_a_json_document_holds_objects_and_collections(orders: list[Order]) -> None:
    reader = document_reader("json")
    assert reader.name == FAST_OR_GENERIC  # tests/test_documents_fast_path.py: the same bytes
    records = json.loads(export_bytes(reader, 4))
    assert records == expected()
    assert any(record["billing"] is None for record in records)
    assert any(record["lines"] == [] for record in records)
    assert any(len(record["payments"]) > 1 for record in records)
    assert all("__" not in key for record in records for key in record)


def test_json_lines_hold_the_same_documents(orders: list[Order]) -> None:
    lines = export_bytes(document_reader("jsonl"), 3).decode().splitlines()
    assert [json.loads(line) for line in lines] == expected()


def element_record(element: Any) -> dict[str, Any]:
    return {child.tag: child for child in element}


def test_an_xml_document_has_wrapper_elements_with_one_element_per_item(
    orders: list[Order],
) -> None:
    root = etree.fromstring(export_bytes(document_reader("xml"), 4))
    documents = expected()
    assert len(root) == len(documents)
    for element, document in zip(root, documents, strict=True):
        children = element_record(element)
        assert [child.tag for child in element] == [
            name for name in NAMES if document[name] is not None
        ]
        if document["billing"] is None:
            assert "billing" not in children
        else:
            billing = {child.tag: child.text for child in children["billing"]}
            assert billing == document["billing"]
        lines = children["lines"]
        assert [item.tag for item in lines] == ["item"] * len(document["lines"])
        for item, line in zip(lines, document["lines"], strict=True):
            texts = {child.tag: child.text for child in item if child.tag != "product"}
            assert texts == {k: str(v) for k, v in line.items() if k != "product"}
            product = item.find("product")
            assert (product is None) == (line["product"] is None)
        payments = children["payments"]
        assert [item.tag for item in payments] == ["payment"] * len(document["payments"])
        assert [item.findtext("reference") for item in payments] == [
            payment["reference"] for payment in document["payments"]
        ]
        if not document["lines"]:
            assert etree.tostring(lines) == b"<lines/>" or lines.text is None


def test_a_chunks_items_are_read_with_one_query_per_collection(
    orders: list[Order], settings: Any
) -> None:
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "FAST_PATH": False}  # the generic path
    reader = document_reader("json")
    with CaptureQueriesContext(connection) as queries:
        export_bytes(reader, 4)  # chunks of 4, 4 and 2 records
    line_queries = [q["sql"] for q in queries if 'FROM "shop_orderline"' in q["sql"]]
    payment_queries = [q["sql"] for q in queries if 'FROM "shop_transaction"' in q["sql"]]
    if connection.vendor == "mysql":
        line_queries = [q["sql"] for q in queries if "FROM `shop_orderline`" in q["sql"]]
        payment_queries = [q["sql"] for q in queries if "FROM `shop_transaction`" in q["sql"]]
    assert len(line_queries) == 3
    assert len(payment_queries) == 3
    assert all(" IN (" in sql for sql in line_queries + payment_queries)


def test_nested_datetimes_are_written_in_the_time_zone(orders: list[Order]) -> None:
    options = FileOptions(timezone="Europe/Berlin")
    records = json.loads(export_bytes(document_reader("json", options=options), 4))
    berlin = options.zone
    for record, document in zip(records, expected(), strict=True):
        for payment, utc in zip(record["payments"], document["payments"], strict=True):
            moment = dt.datetime.fromisoformat(utc["created_at"]).astimezone(berlin)
            assert payment["created_at"] == moment.isoformat()


def test_fields_select_top_level_columns_and_whole_collections(
    api: Any, worker: Any, orders: list[Order]
) -> None:
    data = export_file(api, worker, "orderDocument", "format=json&fields=ref,lines")
    assert json.loads(data) == [
        {"ref": record["ref"], "lines": record["lines"]} for record in expected()
    ]
    assert ReportExport.objects.get().reader == FAST_OR_GENERIC
    response = api.post("/api/report/orderDocument/start?format=json&fields=lines__sku")
    assert response.status_code == 400
    assert "'lines__sku'" in json.dumps(response.json())
    listed = {item["service"]: item for item in api.get("/api/report/").json()}
    assert listed["orderDocument"]["fields"] == NAMES


@pytest.mark.parametrize("export_format", ["json", "xml"])
def test_pause_and_resume_give_the_same_document_bytes(
    api: Any, worker: Any, settings: Any, orders: list[Order], export_format: str
) -> None:
    OrderFactory.create_batch(20)
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 3, "CHECKPOINT_INTERVAL": 0}
    query = f"format={export_format}"
    uninterrupted = export_file(api, worker, "orderDocument", query)
    paused_at, resumed = paused_and_resumed(api, worker, "orderDocument", query, 9)
    assert 9 <= paused_at <= 30
    assert resumed == uninterrupted
    if export_format == "json":
        assert json.loads(uninterrupted) == expected()


# --- checks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "check_id", "text"),
    [
        ([Nested("lines", "lines", ["sku"])], "E037", "not a to-one relation"),
        ([Nested("billing", "nope", ["city"])], "E003", "'nope' does not resolve"),
        ([Collection("buyer", "customer", ["email"])], "E037", "not a reverse foreign key"),
        (
            [Nested("customer", "customer", [Collection("orders", "orders", ["id"])])],
            "E037",
            "a collection inside a nested entry",
        ),
        ([Collection("lines", "lines", ["nope"])], "E003", "'nope' does not resolve"),
        ([Collection("lines", "lines", ["sku"], order_by=["nope"])], "E003", "order_by"),
        ([Collection("lines", "lines", ["order__lines__sku"])], "E008", "'order__lines'"),
        ([Nested("billing", "billing_address", ["city", "city"])], "E033", "'city'"),
        ([Nested("bill__to", "billing_address", ["city"])], "E034", "'bill__to'"),
        (
            [Nested("billing", "billing_address", [Column("c", F_CITY)])],
            "E035",
            "nested object",
        ),
    ],
)
@pytest.mark.django_db(transaction=False)
def test_the_checks_refuse_what_a_document_cannot_hold(
    fields: list[Any], check_id: str, text: str
) -> None:
    errors = column_errors(fields)
    assert any(found == check_id and text in msg for found, msg in errors), errors


@pytest.mark.django_db(transaction=False)
def test_a_document_offers_csv_only_when_flattened() -> None:
    errors = column_errors([Collection("lines", "lines", ["sku"])], formats=["json", "csv"])
    assert [found for found, _ in errors] == ["E038"]
    assert "'csv'" in errors[0][1]
    assert column_errors(FIELDS, formats=["json", "xml", "jsonl"]) == []


@pytest.mark.parametrize("export_format", ["json", "xml", "jsonl"])
def test_a_sharded_document_is_byte_identical_to_an_unsharded_one(
    api: Any, worker: Any, settings: Any, caplog: Any, orders: list[Order], export_format: str
) -> None:
    base = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 2, "CHECKPOINT_INTERVAL": 0}
    settings.REPORT_EXPORT = {**base, "SHARD_ROWS": None}
    expected_bytes = export_file(api, worker, "orderDocument", f"format={export_format}")
    settings.REPORT_EXPORT = {**base, "SHARD_ROWS": 4}
    with caplog.at_level(logging.INFO, logger="django_report_export"):
        sharded = export_file(api, worker, "orderDocument", f"format={export_format}")
    assert shard_runs(caplog) == {"0", "1", "2"}
    assert sharded == expected_bytes


def test_the_listing_and_the_schema_describe_the_nested_shape(
    api: Any,
    registered: Any,  # noqa: F811
) -> None:
    registered("orderDocument", OrderDocument)
    listed = {item["service"]: item for item in api.get("/api/report/").json()}
    columns = {column["name"]: column for column in listed["orderDocument"]["columns"]}
    assert list(columns) == NAMES
    assert columns["ref"] == {"name": "ref", "label": "number", "kind": "value"}
    assert columns["billing"]["kind"] == "object"
    assert [c["name"] for c in columns["billing"]["fields"]] == ["name", "city", "land"]
    lines = columns["lines"]
    assert lines["kind"] == "list"
    assert [c["name"] for c in lines["fields"]] == [
        "sku",
        "quantity",
        "unit_price",
        "total",
        "product",
    ]
    assert lines["fields"][-1]["kind"] == "object"
    assert {"name": "id", "label": "ID", "kind": "value"} in listed["order"]["columns"]
    schema = served_schema(api)
    listing = json.dumps(schema["components"]["schemas"])
    assert '"kind"' in listing
    assert '"object"' in listing
    start = json.dumps(schema["paths"]["/api/report/orderDocument/start"])
    assert json.dumps(NAMES) in start


# --- csv: one row per item ------------------------------------------------------------------


class OrderLinesCsv(ExportService):
    model = Order
    fields = [
        "id",
        Column("ref", "number"),
        Nested("billing", "billing_address", ["name", "city"]),
        Collection("lines", "lines", ["sku", "quantity", Column("total", "line_total")]),
    ]
    flatten = "lines"
    formats = ["csv", "json"]


FLAT_HEADER = [
    "id",
    "ref",
    "billing.name",
    "billing.city",
    "lines.sku",
    "lines.quantity",
    "lines.total",
]


def expected_rows() -> list[list[str]]:
    """One CSV row per order line, the order's columns repeated; an order without lines once."""
    rows = []
    for order in Order.objects.select_related("billing_address").order_by("pk"):
        address = order.billing_address
        parent = [str(order.pk), order.number]
        parent += ["", ""] if address is None else [address.name, address.city]
        lines = OrderLine.objects.filter(order=order).order_by("pk")
        items = [[line.sku, str(line.quantity), str(line.line_total)] for line in lines]
        rows += [parent + item for item in items or [["", "", ""]]]
    return rows


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def test_a_flattened_csv_has_one_row_per_item(
    api: Any,
    worker: Any,
    orders: list[Order],
    registered: Any,  # noqa: F811
) -> None:
    registered("orderLinesCsv", OrderLinesCsv)
    rows = read_csv(export_file(api, worker, "orderLinesCsv", "format=csv"))
    assert rows[0] == FLAT_HEADER
    assert rows[1:] == expected_rows()
    assert len(rows) - 1 > Order.objects.count()
    labels = read_csv(export_file(api, worker, "orderLinesCsv", "format=csv&header=labels"))[0]
    assert labels[:4] == ["ID", "number", "billing: name", "billing: city"]
    assert labels[4] == "lines: sku"
    documents = json.loads(export_file(api, worker, "orderLinesCsv", "format=json"))
    assert [len(d["lines"]) for d in documents] == [
        OrderLine.objects.filter(order=o).count() for o in Order.objects.order_by("pk")
    ]
    # Without the collection the rows are the records again, on the fast path where it is.
    plain = read_csv(export_file(api, worker, "orderLinesCsv", "format=csv&fields=id,ref"))
    assert len(plain) - 1 == Order.objects.count()


def test_pause_and_resume_give_the_same_flattened_csv(
    api: Any,
    worker: Any,
    settings: Any,
    orders: list[Order],
    registered: Any,  # noqa: F811
) -> None:
    registered("orderLinesCsv", OrderLinesCsv)
    OrderFactory.create_batch(20)
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 3, "CHECKPOINT_INTERVAL": 0}
    uninterrupted = export_file(api, worker, "orderLinesCsv", "format=csv")
    paused_at, resumed = paused_and_resumed(api, worker, "orderLinesCsv", "format=csv", 9)
    assert 9 <= paused_at <= 30  # records, not rows
    assert resumed == uninterrupted
    assert read_csv(uninterrupted)[1:] == expected_rows()


@pytest.mark.django_db(transaction=False)
def test_csv_needs_the_collection_named_by_flatten() -> None:
    lines = Collection("lines", "lines", ["sku"])
    payments = Collection("payments", "transactions", ["reference"])
    assert column_errors([lines], formats=["csv"])[0][0] == "E038"
    assert column_errors([lines], formats=["csv"], flatten="lines") == []
    assert column_errors([lines], formats=["xlsx"], flatten="lines")[0][0] == "E038"
    assert column_errors([lines], formats=["json"], flatten="id")[0][0] == "E038"
    assert column_errors([Nested("billing", "billing_address", ["city"])], formats=["csv"]) == []
    OrderLinesCsv.fields.append(payments)
    try:
        found = column_errors(OrderLinesCsv.fields, formats=["csv"], flatten="lines")
        errors = [check_id for check_id, _ in found]
    finally:
        OrderLinesCsv.fields.remove(payments)
    assert errors == ["E038"]
