"""The PostgreSQL fast path for documents (readers/postgres_documents.py): for every column and
nested kind, awkward values, empty collections, null objects and filtered and ordered
collections, the database builds the same bytes as the generic document reader, in JSON, JSON
Lines and XML, whatever the chunk size; after a pause and sharded too. A collection is one
aggregate per segment, not a subquery per record; where the bytes could differ the generic
reader takes the export."""

from __future__ import annotations

import itertools
import json
import logging
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.models import DecimalField, ExpressionWrapper, F, Q
from django.db.models import Value as V
from django.db.models.functions import Concat

from django_report_export.columns import Collection, Column, Nested
from django_report_export.documents import reader_for
from django_report_export.formats import get_writer_class
from django_report_export.models import ReportExport
from django_report_export.options import FileOptions
from django_report_export.readers import postgres_documents
from django_report_export.readers.documents import DocumentReader
from django_report_export.readers.postgres_documents import (
    DOCUMENT_PIECE_ROWS,
    PostgresDocumentReader,
)
from django_report_export.registry import ExportService, site
from testproject.shop.models import (
    Address,
    CustomerAccount,
    Inquiry,
    Order,
    OrderLine,
    Product,
    Transaction,
)

from .support.polling import paused_and_resumed
from .test_columns import export_file
from .test_documents import FIELDS as ORDER_DOCUMENT_FIELDS
from .test_documents import OrderDocument, orders  # noqa: F401  (the fixture)
from .test_readers import AWKWARD_TEXTS, export_bytes, moments, random_texts, shop  # noqa: F401
from .test_registry import registered  # noqa: F401  (the fixture)
from .test_shards import shard_runs

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the fast path is PostgreSQL's"),
]

FORMATS = ["json", "jsonl", "xml"]

MONEY = DecimalField(max_digits=14, decimal_places=2)

#: Every column kind (text, awkward text, decimal, datetime and a nullable one, a choice label,
#: expressions), nested objects (null ones, one inside another, booleans, dates, decimals),
#: collections ordered by several columns (descending, a related column) and filtered by a Q.
ORDER_FIELDS: list[Any] = [
    "id",
    "number",
    "note",
    "subtotal",
    "created_at",
    "paid_at",
    Column("status", display=True),
    Column("gross", F("total") + F("shipping")),
    Column("buyer", Concat("customer__first_name", V(" "), "customer__last_name")),
    Nested(
        "customer",
        "customer",
        [
            "email",
            "first_name",
            Column("name", "last_name"),
            "birth_date",
            "is_active",
            "credit_balance",
            "last_login_at",
        ],
    ),
    Nested("billing", "billing_address", ["name", "company", "city", Column("land", "country")]),
    Nested("ship to", "shipping_address", ["name"]),
    Collection(
        "lines",
        "lines",
        [
            "sku",
            "title",
            "quantity",
            "unit_price",
            Column("total", "line_total"),
            Column("net", ExpressionWrapper(F("unit_price") * F("quantity"), output_field=MONEY)),
            Column("label", Concat("sku", V(" x "), "title")),
            Nested(
                "product",
                "product",
                ["sku", "name", "is_active", Nested("category", "category", ["name", "slug"])],
            ),
        ],
        order_by=["-quantity", "product__name", "title"],
    ),
    Collection(
        "payments",
        "transactions",
        [
            "reference",
            "amount",
            Column("kind", display=True),
            Column("provider", display=True),
            "created_at",
        ],
        order_by=["-created_at"],
        filter=Q(status="succeeded") | Q(kind="refund"),
        item="payment",
    ),
    Collection("empty", "transactions", ["reference"], filter={"status": "nope"}),
]


class OrderEverything(ExportService):
    model = Order
    fields = ORDER_FIELDS
    formats = FORMATS


class CustomerInquiries(ExportService):
    """A collection of UUID-keyed items."""

    model = CustomerAccount
    fields = [
        "id",
        "email",
        Collection(
            "inquiries",
            "inquiries",
            ["id", "subject", "message", Column("status", display=True), "answered_at"],
            order_by=["created_at"],
        ),
    ]
    formats = FORMATS


class InquiryDocument(ExportService):
    """Documents keyed by UUIDs, with a nested object that is often null."""

    model = Inquiry
    fields = ["id", "subject", Nested("customer", "customer", ["id", "email", "birth_date"])]
    formats = FORMATS


SERVICES = {
    "orderEverything": OrderEverything,
    "customerInquiries": CustomerInquiries,
    "inquiryDocument": InquiryDocument,
}


@pytest.fixture
def documents(shop: Any, registered: Any) -> None:  # noqa: F811
    """The seeded shop with order lines and addresses of awkward values, orders without lines
    or addresses, lines without products."""
    for name, service in SERVICES.items():
        registered(name, service)
    texts = [*AWKWARD_TEXTS, *random_texts(40, seed=5)]
    products = list(Product.objects.order_by("pk"))
    amounts = [Decimal("0.00"), Decimal("-0.01"), Decimal("9999999999.99"), Decimal("0.10")]
    lines = []
    for index, order in enumerate(Order.objects.order_by("pk")):
        if index % 3 == 1:
            order.billing_address = Address.objects.create(
                name=texts[index % len(texts)],
                company=texts[(index * 3) % len(texts)],
                street="x",
                postal_code="1",
                city=texts[(index * 5) % len(texts)],
                country="DE",
            )
            order.shipping_address = order.billing_address if index % 2 else None
            order.save()
        for line in range(index % 5):
            lines.append(
                OrderLine(
                    order=order,
                    product=None if (index + line) % 4 == 0 else products[line % len(products)],
                    sku=texts[(index + line) % len(texts)][:40],
                    title=texts[(index * 7 + line) % len(texts)][:200],
                    quantity=line % 3,  # equal quantities: the next order columns decide
                    unit_price=amounts[line % len(amounts)],
                    line_total=amounts[(index + line) % len(amounts)],
                )
            )
    OrderLine.objects.bulk_create(lines)
    times = moments()
    for index, inquiry in enumerate(Inquiry.objects.order_by("pk")):
        inquiry.created_at = times[index % 3]  # equal times: the key decides
        inquiry.save()


def document_reader(
    service_name: str, export_format: str, *, fast: bool, options: Any = None, settings: Any
) -> Any:
    service = site.get(service_name)
    names = [entry if isinstance(entry, str) else entry.name for entry in service.fields]
    writer = get_writer_class(export_format)(service_name, names)
    if options is not None:
        writer.options = options
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "FAST_PATH": fast}
    return reader_for(service, names, service.get_queryset().order_by("pk"), writer)


@pytest.mark.parametrize("export_format", FORMATS)
@pytest.mark.parametrize("service_name", list(SERVICES))
def test_the_database_builds_the_generic_paths_documents_byte_for_byte(
    documents: None, settings: Any, monkeypatch: Any, service_name: str, export_format: str
) -> None:
    """Chunks of one piece, of several, a last piece cut short: the generic path's bytes."""
    for piece_rows, chunk_size in itertools.product((3, DOCUMENT_PIECE_ROWS), (7, 100, 5000)):
        monkeypatch.setattr(postgres_documents, "DOCUMENT_PIECE_ROWS", piece_rows)
        fast = document_reader(service_name, export_format, fast=True, settings=settings)
        assert isinstance(fast, PostgresDocumentReader), f"{service_name} left the fast path"
        assert fast.name == "postgresql-copy"
        assert fast.plan.piece_rows == piece_rows
        generic = document_reader(service_name, export_format, fast=False, settings=settings)
        assert isinstance(generic, DocumentReader)
        expected = export_bytes(generic, chunk_size)
        assert export_bytes(fast, chunk_size) == expected, (service_name, piece_rows, chunk_size)
    if export_format == "json" and service_name == "orderEverything":
        records = json.loads(expected)
        assert any(record["lines"] == [] for record in records)
        assert any(len(record["lines"]) > 2 for record in records)
        assert any(record["billing"] is None for record in records)
        assert any(record["ship to"] is not None for record in records)
        assert all(record["empty"] == [] for record in records)
        products = [line["product"] for record in records for line in record["lines"]]
        assert None in products
        assert any(products)


@pytest.mark.parametrize("export_format", FORMATS)
def test_the_document_tests_service_takes_the_fast_path_byte_for_byte(
    orders: list[Order],  # noqa: F811
    settings: Any,
    export_format: str,
) -> None:
    assert OrderDocument.fields is ORDER_DOCUMENT_FIELDS
    for chunk_size in (1, 4, 100):
        fast = document_reader("orderDocument", export_format, fast=True, settings=settings)
        assert isinstance(fast, PostgresDocumentReader)
        generic = document_reader("orderDocument", export_format, fast=False, settings=settings)
        assert export_bytes(fast, chunk_size) == export_bytes(generic, chunk_size)


def test_an_empty_export_is_the_same_on_both_paths(documents: None, settings: Any) -> None:
    Order.objects.all().delete()
    for export_format in FORMATS:
        fast = document_reader("orderEverything", export_format, fast=True, settings=settings)
        generic = document_reader("orderEverything", export_format, fast=False, settings=settings)
        assert export_bytes(fast, 10) == export_bytes(generic, 10)


def test_a_collection_is_looked_up_per_record_through_its_links_index(
    documents: None, settings: Any
) -> None:
    """With its link indexed, a collection is an index look-up per record in the segment's one
    statement, evaluated once: not an aggregate of the whole segment that each parallel
    process would run in full."""
    reader = document_reader("orderEverything", "json", fast=True, settings=settings)
    assert all(collection.indexed for collection in reader.plan.collections)
    scans = _collection_scans(reader, workers=2)
    records = Order.objects.count()
    assert len(scans) == 3  # lines, payments and the empty collection
    looked_up = ("Index Scan", "Bitmap Heap Scan")  # the second over a bitmap of the index
    assert all(node["Node Type"] in looked_up for node in scans), scans
    assert all(node["Actual Loops"] == records for node in scans), scans


def test_a_collection_without_an_index_on_its_link_is_one_aggregate_per_segment(
    documents: None, settings: Any
) -> None:
    """Where no index leads with the link, a look-up per record would scan the items' table
    for each: the items of the whole segment are aggregated once instead, with the same
    bytes."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, OrderLine._meta.db_table)
    (index,) = [
        name
        for name, found in constraints.items()
        if found["index"] and found["columns"] == ["order_id"]
    ]
    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX "{index}"')
    try:
        for export_format in FORMATS:
            fast = document_reader("orderEverything", export_format, fast=True, settings=settings)
            indexed = {c.queryset.model: c.indexed for c in fast.plan.collections}
            assert indexed == {OrderLine: False, Transaction: True}
            generic = document_reader(
                "orderEverything", export_format, fast=False, settings=settings
            )
            assert export_bytes(fast, 7) == export_bytes(generic, 7)
        lines = [
            node
            for node in _collection_scans(fast, workers=0)
            if node["Relation Name"] == "shop_orderline"
        ]
        assert lines
        assert all(node["Actual Loops"] == 1 for node in lines), lines
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE INDEX "{index}" ON "shop_orderline" ("order_id")')


def _collection_scans(reader: Any, *, workers: int) -> list[dict[str, Any]]:
    """The plan nodes that read the collections' tables, over a segment of every order."""
    keys = list(Order.objects.order_by("pk").values_list("pk", flat=True))
    sql, params = reader.plan.pieces_sql(None, keys[-1], [keys[100] + 1])
    query = sql.removeprefix("COPY (").removesuffix(") TO STDOUT WITH (FORMAT binary)")
    with connection.cursor() as cursor:
        cursor.execute(f"SET max_parallel_workers_per_gather = {workers}")
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", params)
        plan = cursor.fetchone()[0]
        cursor.execute("RESET max_parallel_workers_per_gather")
    return list(_nodes(plan[0]["Plan"], "shop_orderline")) + list(
        _nodes(plan[0]["Plan"], "shop_transaction")
    )


def _nodes(node: dict[str, Any], relation: str) -> Any:
    if node.get("Relation Name") == relation:
        yield node
    for child in node.get("Plans", ()):
        yield from _nodes(child, relation)


# --- through the job ------------------------------------------------------------------------


@pytest.mark.parametrize("export_format", FORMATS)
def test_an_export_records_the_fast_path_and_resumes_to_the_same_bytes(
    api: Any, worker: Any, settings: Any, documents: None, export_format: str
) -> None:
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 7, "CHECKPOINT_INTERVAL": 0}
    query = f"format={export_format}"
    uninterrupted = export_file(api, worker, "orderEverything", query)
    assert ReportExport.objects.get().reader == "postgresql-copy"
    paused_at, resumed = paused_and_resumed(api, worker, "orderEverything", query, 30)
    assert 30 <= paused_at <= Order.objects.count()
    assert resumed == uninterrupted
    generic = document_reader("orderEverything", export_format, fast=False, settings=settings)
    assert uninterrupted == export_bytes(generic, 50)


@pytest.mark.parametrize("export_format", FORMATS)
def test_a_sharded_fast_document_is_byte_identical_to_an_unsharded_one(
    api: Any, worker: Any, settings: Any, caplog: Any, documents: None, export_format: str
) -> None:
    base = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 20, "CHECKPOINT_INTERVAL": 0}
    settings.REPORT_EXPORT = {**base, "SHARD_ROWS": None}
    expected_bytes = export_file(api, worker, "orderEverything", f"format={export_format}")
    settings.REPORT_EXPORT = {**base, "SHARD_ROWS": 100}
    with caplog.at_level(logging.INFO, logger="django_report_export"):
        sharded = export_file(api, worker, "orderEverything", f"format={export_format}")
    assert shard_runs(caplog) == {"0", "1", "2"}
    assert sharded == expected_bytes
    assert set(ReportExport.objects.values_list("reader", flat=True)) == {"postgresql-copy"}


# --- where the generic path takes a document ------------------------------------------------


class WithTransform(ExportService):
    model = Order
    fields = ["id", Collection("lines", "lines", [Column("sku", transform=str.lower)])]
    formats = FORMATS


class OrderedByRelation(ExportService):
    model = Order
    fields = ["id", Collection("lines", "lines", ["sku"], order_by=["product"])]
    formats = FORMATS


class Flattened(ExportService):
    model = Order
    fields = ["id", Collection("lines", "lines", ["sku"])]
    flatten = "lines"
    formats = ["csv", "json"]


@pytest.mark.parametrize(
    ("service_name", "service", "export_format", "options"),
    [
        ("withTransform", WithTransform, "json", None),
        ("orderedByRelation", OrderedByRelation, "xml", None),
        ("flattened", Flattened, "csv", None),
        ("orderEverything", OrderEverything, "json", FileOptions(timezone="Europe/Berlin")),
    ],
)
def test_the_generic_path_takes_what_the_database_could_write_otherwise(
    documents: None,
    registered: Any,  # noqa: F811
    settings: Any,
    service_name: str,
    service: type[ExportService],
    export_format: str,
    options: Any,
) -> None:
    if service_name not in SERVICES:
        registered(service_name, service)
    reader = document_reader(
        service_name, export_format, fast=True, options=options, settings=settings
    )
    assert isinstance(reader, DocumentReader)
    assert reader.name == "generic"
    assert export_bytes(reader, 50)


def test_a_document_without_datetimes_stays_fast_in_another_time_zone(
    documents: None, settings: Any
) -> None:
    options = FileOptions(timezone="Europe/Berlin")
    for export_format in FORMATS:
        fast = document_reader(
            "inquiryDocument", export_format, fast=True, options=options, settings=settings
        )
        assert isinstance(fast, PostgresDocumentReader)  # a UUID key, dates: no datetime
        generic = document_reader(
            "inquiryDocument", export_format, fast=False, options=options, settings=settings
        )
        assert export_bytes(fast, 9) == export_bytes(generic, 9)
