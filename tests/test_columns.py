"""Named, labelled and computed columns (docs/declaring-services.md): every kind read back and
compared with the ORM, the same bytes on PostgreSQL's fast path as on the generic path, a
transform on the generic path, field selection, labels, the listing and schema by name, pause
and resume, and the system checks that refuse what cannot be exported exactly."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any

import openpyxl
import pytest
from django.core import checks
from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Concat
from django.utils.translation import gettext_lazy as _
from lxml import etree

from django_report_export.columns import Column, selection
from django_report_export.documents import sheet_labels
from django_report_export.formats import get_writer_class
from django_report_export.models import ReportExport, Status
from django_report_export.options import FileOptions
from django_report_export.readers import OrmChunkReader, get_reader
from django_report_export.readers.fast_path import ALL_FORMATS, postgres_reader
from django_report_export.registry import ExportService, site
from testproject.shop.factories import OrderFactory
from testproject.shop.models import Order, OrderLine

from .support.polling import paused_and_resumed
from .test_api_schema import served_schema
from .test_readers import export_bytes
from .test_registry import registered  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)

CENT = Decimal("0.01")
MONEY = DecimalField(max_digits=13, decimal_places=2)
UNITS = (
    OrderLine.objects.filter(order=OuterRef("pk"))
    .order_by()
    .values("order")
    .annotate(units=Sum("quantity"))
    .values("units")
)
LINES_TOTAL = (
    OrderLine.objects.filter(order=OuterRef("pk"))
    .order_by()
    .values("order")
    .annotate(total=Sum("line_total"))
    .values("total")
)

COLUMNS: list[Any] = [
    "id",
    Column("ref", "number", label=_("Order number")),
    Column("email", "customer__email"),
    Column("status", display=True),
    Column("status_code", "status"),
    # SQLite adds floats: the output field's decimal places round them back (columns.py).
    Column("gross", ExpressionWrapper(F("total") + F("shipping"), output_field=MONEY)),
    Column(
        "buyer",
        Concat("customer__first_name", Value(" "), "customer__last_name", output_field=CharField()),
    ),
    Column("paid", Case(When(paid_at__isnull=False, then=True), default=False)),
    Column("units", Coalesce(Subquery(UNITS, output_field=IntegerField()), 0)),
    Column("lines_total", Subquery(LINES_TOTAL)),
    "customer__country",
]


class OrderColumns(ExportService):
    model = Order
    fields = COLUMNS
    formats = ["json", "csv", "xml", "jsonl", "xlsx"]


class OrderNotes(ExportService):
    model = Order
    fields = ["id", Column("note", transform=str.upper), Column("ref", "number")]
    formats = ["json", "csv"]


@pytest.fixture
def services(registered: Any) -> None:  # noqa: F811
    registered("orderColumns", OrderColumns)
    registered("orderNotes", OrderNotes)


@pytest.fixture
def orders(services: None) -> list[Order]:
    orders = OrderFactory.create_batch(12)
    orders[3].paid_at = None
    orders[3].save()
    for index, order in enumerate(orders[:8]):
        for line in range(index % 4):
            OrderLine.objects.create(
                order=order,
                sku=f"S{index}-{line}",
                title="A line",
                quantity=line + 1,
                unit_price=Decimal("1.25") * (line + 1),
                line_total=Decimal("1.25") * (line + 1) ** 2,
            )
    return orders


def as_json(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` as the JSON writer writes them: decimals exact, as their text."""
    return json.loads(json.dumps(records, default=str))


def expected_records(names: list[str] | None = None) -> list[dict[str, Any]]:
    """What each column holds, computed apart from the export's machinery."""
    records = []
    for order in Order.objects.select_related("customer").order_by("pk"):
        lines = OrderLine.objects.filter(order=order)
        total = lines.aggregate(total=Sum("line_total"), units=Sum("quantity"), n=Count("pk"))
        record = {
            "id": order.pk,
            "ref": order.number,
            "email": order.customer.email,
            "status": order.get_status_display(),
            "status_code": order.status,
            "gross": order.total + order.shipping,
            "buyer": f"{order.customer.first_name} {order.customer.last_name}",
            "paid": order.paid_at is not None,
            "units": total["units"] or 0,
            # The sum has its column's two places, on SQLite too (ORM aggregates: 15 digits).
            "lines_total": None if total["total"] is None else total["total"].quantize(CENT),
            "customer__country": order.customer.country,
        }
        records.append({name: record[name] for name in names or list(record)})
    return records


def reader_for(service_name: str, export_format: str, *, fast: bool) -> Any:
    service = site.get(service_name)
    names = [column if isinstance(column, str) else column.name for column in service.fields]
    chosen = selection(service, names)
    writer = get_writer_class(export_format)(service_name, names)
    labels = sheet_labels(service, names, export_format)  # xlsx: the declared labels
    writer.options = FileOptions(labels=labels)
    queryset = service.get_queryset().order_by("pk")
    if fast:
        return postgres_reader(queryset, chosen.items, writer, ALL_FORMATS)
    return OrmChunkReader(queryset, chosen.items, writer, chosen.transforms)


def test_every_column_kind_reads_back_as_the_orm_computes_it(orders: list[Order]) -> None:
    data = export_bytes(reader_for("orderColumns", "json", fast=False), 5)
    records = json.loads(data)
    assert records == as_json(expected_records())
    assert list(records[0]) == [c if isinstance(c, str) else c.name for c in COLUMNS]
    assert not any("__" in key for key in records[0] if key != "customer__country")
    assert {record["status"] for record in records} <= set(Order.Status.labels)
    assert any(record["units"] for record in records)
    assert any(record["lines_total"] is None for record in records)  # no lines: NULL


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the fast path is PostgreSQL's")
@pytest.mark.parametrize("export_format", ["json", "csv", "xml", "jsonl", "xlsx"])
def test_the_fast_path_writes_every_column_kind_byte_for_byte(
    orders: list[Order], export_format: str
) -> None:
    fast = reader_for("orderColumns", export_format, fast=True)
    assert fast is not None, f"{export_format} left the fast path"
    assert fast.name == "postgresql-copy"
    generic = reader_for("orderColumns", export_format, fast=False)
    for chunk_size in (5, 100):
        fast = reader_for("orderColumns", export_format, fast=True)
        generic = reader_for("orderColumns", export_format, fast=False)
        assert export_bytes(fast, chunk_size) == export_bytes(generic, chunk_size)


def test_a_transform_runs_in_python_on_the_generic_path(orders: list[Order]) -> None:
    service = site.get("orderNotes")
    chosen = selection(service, ["id", "note", "ref"])
    assert chosen.transforms == {1: str.upper}
    writer = get_writer_class("json")("orderNotes", ["id", "note", "ref"])
    queryset = service.get_queryset().order_by("pk")
    reader = get_reader(queryset, chosen.items, writer, chosen.transforms)
    assert reader.name == "generic"
    records = json.loads(export_bytes(reader, 5))
    assert records == [
        {"id": order.pk, "note": order.note.upper(), "ref": order.number}
        for order in Order.objects.order_by("pk")
    ]


def export_file(api: Any, worker: Any, service: str, query: str) -> bytes:
    response = api.post(f"/api/report/{service}/start?{query}")
    assert response.status_code == 202, response.content
    worker()
    assert api.get(f"/api/report/{service}/status").json()["status"] == Status.FINISHED
    response = api.get(f"/api/report/{service}/download")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def test_an_export_selects_columns_by_name_and_records_the_reader(
    api: Any, worker: Any, orders: list[Order]
) -> None:
    data = export_file(api, worker, "orderColumns", "format=json&fields=ref,status,units")
    assert json.loads(data) == as_json(expected_records(["ref", "status", "units"]))
    export = ReportExport.objects.get()
    assert export.fields == ["ref", "status", "units"]
    fast = connection.vendor == "postgresql"
    assert export.reader == ("postgresql-copy" if fast else "generic")
    export_file(api, worker, "orderNotes", "format=json")
    assert ReportExport.objects.filter(service="orderNotes").get().reader == "generic"


def test_the_csv_header_is_the_names_or_the_labels(
    api: Any, worker: Any, orders: list[Order]
) -> None:
    query = "format=csv&fields=id,ref,email,gross"
    names = next(csv.reader(io.StringIO(export_file(api, worker, "orderColumns", query).decode())))
    assert names == ["id", "ref", "email", "gross"]
    data = export_file(api, worker, "orderColumns", f"{query}&header=labels")
    labels = next(csv.reader(io.StringIO(data.decode())))
    # The declared label; the field's verbose name; the name of an expression.
    assert labels == ["ID", "Order number", "email", "gross"]


def test_an_xlsx_header_has_the_declared_labels(api: Any, worker: Any, orders: list[Order]) -> None:
    data = export_file(api, worker, "orderColumns", "format=xlsx&fields=id,ref,gross")
    sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert rows[0] == ["id", "Order number", "gross"]  # undeclared: the name
    assert [row[1] for row in rows[1:]] == [o.number for o in Order.objects.order_by("pk")]
    assert ReportExport.objects.get().options["labels"] == ["id", "Order number", "gross"]
    plain = export_file(api, worker, "orderColumns", "format=xlsx&fields=id,gross")
    sheet = openpyxl.load_workbook(io.BytesIO(plain), read_only=True).worksheets[0]
    assert next(sheet.iter_rows(values_only=True)) == ("id", "gross")
    json_export = export_file(api, worker, "orderColumns", "format=json&fields=ref")
    assert json.loads(json_export)[0] == {"ref": Order.objects.order_by("pk")[0].number}


def test_xml_elements_are_the_names(api: Any, worker: Any, orders: list[Order]) -> None:
    data = export_file(api, worker, "orderColumns", "format=xml&fields=id,ref,paid")
    items = etree.fromstring(data)
    first = items[0]
    assert [child.tag for child in first] == ["id", "ref", "paid"]
    assert first.findtext("ref") == Order.objects.order_by("pk")[0].number


@pytest.mark.parametrize(
    ("fields", "message"),
    [("number", "'number'"), ("ref,customer__email", "'customer__email'")],
)
def test_a_renamed_path_is_unknown_by_its_old_name(
    api: Any, services: None, fields: str, message: str
) -> None:
    response = api.post(f"/api/report/orderColumns/start?format=json&fields={fields}")
    assert response.status_code == 400
    assert message in json.dumps(response.json())


def test_the_listing_and_the_schema_name_the_columns(api: Any, services: None) -> None:
    names = [c if isinstance(c, str) else c.name for c in COLUMNS]
    listed = {item["service"]: item for item in api.get("/api/report/").json()}
    assert listed["orderColumns"]["fields"] == names
    assert json.dumps(names) in json.dumps(served_schema(api))


def test_pause_and_resume_give_the_same_bytes_with_columns(
    api: Any, worker: Any, settings: Any, orders: list[Order]
) -> None:
    OrderFactory.create_batch(28)
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 4, "CHECKPOINT_INTERVAL": 0}
    uninterrupted = export_file(api, worker, "orderColumns", "format=json")
    paused_at, resumed = paused_and_resumed(api, worker, "orderColumns", "format=json", 12)
    assert 12 <= paused_at <= 40
    assert resumed == uninterrupted
    assert json.loads(uninterrupted) == as_json(expected_records())


# --- checks --------------------------------------------------------------------------------


def column_errors(
    fields: list[Any], formats: Any = ("json",), flatten: str | None = None
) -> list[tuple[str, str]]:
    class Broken(ExportService):
        model = Order

    Broken.fields = fields
    Broken.formats = list(formats)
    Broken.flatten = flatten
    site.register("brokenColumns", Broken)
    try:
        messages = checks.run_checks(databases=[])
    finally:
        site.unregister("brokenColumns")
    return [
        (message.id.rpartition(".")[2], message.msg)
        for message in messages
        if "brokenColumns" in message.msg
    ]


@pytest.mark.parametrize(
    ("fields", "check_id", "text"),
    [
        (["id", Column("id", "number")], "E033", "two columns are named 'id'"),
        ([Column("customer__email")], "E034", "'customer__email'"),
        ([Column("a b", "number")], "E034", "'a b'"),
        ([Column("missing", "nope")], "E003", "'nope' does not resolve"),
        ([Column("sum", F("nope") + 1)], "E003", "nope"),
        ([Column("sku", "lines__sku")], "E008", "'lines'"),
        ([Column("qty", F("lines__quantity") * 2)], "E008", "joins a to-many relation"),
        ([Column("all", Sum("total"))], "E035", "aggregates the exported rows"),
        ([Column("odd", 42)], "E035", "neither a field path nor an expression"),
        ([Column("number", display=True)], "E036", "without choices"),
    ],
)
@pytest.mark.django_db(transaction=False)
def test_the_checks_refuse_what_cannot_be_exported(fields: list[Any], check_id: str, text: str):
    errors = column_errors(fields)
    assert any(found == check_id and text in msg for found, msg in errors), errors


@pytest.mark.django_db(transaction=False)
def test_the_checks_accept_every_column_kind() -> None:
    assert column_errors(COLUMNS) == []
    assert column_errors(list(OrderNotes.fields)) == []
