"""Relations that give a record many rows.

A field path across a to-many relation is a system-check error and a start refused with 400;
a filter across one exports each matching record exactly once, whatever the chunk size, on the
generic path, on PostgreSQL's fast path and sharded.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.db.models import Q
from lxml import etree

from django_report_export.checks import check_services
from django_report_export.formats import get_writer_class
from django_report_export.models import ReportExport, Status
from django_report_export.query import export_queryset
from django_report_export.readers import get_reader
from django_report_export.readers.postgres import PostgresChunkReader
from django_report_export.registry import ExportService, site
from testproject.shop.factories import (
    CategoryFactory,
    OrderFactory,
    ProductFactory,
    TransactionFactory,
)
from testproject.shop.models import Category, Order, Transaction

pytestmark = pytest.mark.django_db(transaction=True)


class CategoryWithSkus(ExportService):
    model = Category
    fields = ("id", "name", "products__sku")
    formats = ("json", "csv")


class StaffWithGroups(ExportService):
    model = get_user_model()
    fields = ("id", "username", "groups__name")
    formats = ("json",)


class OrderWithCustomer(ExportService):
    """A forward path (one value per order) and one that reaches a to-many relation."""

    model = Order
    fields = ("id", "customer__email", "customer__inquiries__subject")
    formats = ("json",)


@pytest.fixture
def to_many_services() -> Iterator[None]:
    services = {"categorySkus": CategoryWithSkus, "staffGroups": StaffWithGroups}
    for name, service_class in services.items():
        site.register(name, service_class)
    yield
    for name in services:
        site.unregister(name)


def test_a_field_path_across_a_to_many_relation_is_a_check_error(to_many_services):
    errors = {error.obj: error for error in check_services() if error.id.endswith("E008")}
    assert set(errors) == {CategoryWithSkus, StaffWithGroups}
    message = errors[CategoryWithSkus].msg
    assert "'products__sku' crosses the to-many relation 'products'" in message
    assert "once per related row" in message
    assert "groups" in errors[StaffWithGroups].msg
    assert "a product service with 'category__name'" in (errors[CategoryWithSkus].hint or "")
    with pytest.raises(SystemCheckError, match="E008"):
        call_command("check")


def test_only_the_path_that_reaches_a_to_many_relation_is_an_error(db):
    site.register("orderCustomer", OrderWithCustomer)
    try:
        errors = [error for error in check_services() if error.obj is OrderWithCustomer]
    finally:
        site.unregister("orderCustomer")
    # customer__inquiries__subject follows the customer's inquiries: many of them.
    assert [error.id for error in errors] == ["django_report_export.E008"]
    assert "'customer__inquiries'" in errors[0].msg


def test_start_refuses_a_field_path_across_a_to_many_relation(api, to_many_services):
    response = api.post("/api/report/categorySkus/start?format=json")
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "invalid"
    assert "crosses the to-many relation 'products'" in body["errors"]["fields"][0]
    assert api.post("/api/report/categorySkus/start?format=json&fields=id,name").status_code == 202
    assert ReportExport.objects.get().fields == ["id", "name"]


# --- filters across a to-many relation -----------------------------------------------------


@pytest.fixture
def categories() -> list[Category]:
    """12 categories: the odd ones with 1 to 4 products named ``Red ...``, all with others."""
    made = CategoryFactory.create_batch(12)
    for index, category in enumerate(made):
        for n in range(index % 5 if index % 2 else 0):
            ProductFactory(category=category, name=f"Red lamp {index}-{n}")
        ProductFactory.create_batch(2, category=category, name="Blue chair")
    return made


@pytest.fixture
def orders() -> list[Order]:
    """10 orders, each with 0 to 3 succeeded transactions and 0 to 2 failed ones."""
    made = OrderFactory.create_batch(10)
    for index, order in enumerate(made):
        TransactionFactory.create_batch(index % 4, order=order, status="succeeded")
        TransactionFactory.create_batch((index + 1) % 3, order=order, status="failed")
    return made


def export_ids(api: Any, worker: Any, service: str, query: str) -> list[int]:
    response = api.post(f"/api/report/{service}/start?{query}")
    assert response.status_code == 202, response.content
    worker()
    body = api.get(f"/api/report/{service}/status").json()
    assert body["status"] == Status.FINISHED, body
    data = b"".join(api.get(f"/api/report/{service}/download").streaming_content)
    if "format=csv" in query:
        return [int(row["id"]) for row in csv.DictReader(io.StringIO(data.decode()))]
    if "format=xml" in query:
        return [int(record.findtext("id")) for record in etree.fromstring(data)]
    return [record["id"] for record in json.loads(data)]


CASES = [
    ("category", "format=csv&product_search=red", Q(products__name__icontains="red")),
    ("category", "format=json&product_search=tst-", Q(products__sku__icontains="tst-")),
    ("orderRow", "format=json&transaction_status=succeeded", Q(transactions__status="succeeded")),
    (
        "orderRow",
        "format=xml&transaction_status=failed&fields=id",
        Q(transactions__status="failed"),
    ),
]


def expected_ids(service: str, condition: Q) -> list[int]:
    model = site.get(service).model
    return list(
        model.objects.filter(condition).order_by("pk").values_list("pk", flat=True).distinct()
    )


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 1000])
@pytest.mark.parametrize(("service", "query", "condition"), CASES)
def test_a_filter_across_a_to_many_relation_exports_each_record_once(
    api, worker, categories, orders, settings, service, query, condition, chunk_size
):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": chunk_size}
    expected = expected_ids(service, condition)
    model = site.get(service).model
    joined = model.objects.filter(condition).count()
    assert joined > len(expected) > 1, "several matching children per record"
    assert export_ids(api, worker, service, query) == expected
    export = ReportExport.objects.get()
    assert export.processed == export.total == len(expected)


def test_a_sharded_export_with_a_to_many_filter_holds_each_record_once(
    api, worker, orders, settings
):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 2, "SHARD_ROWS": 3}
    expected = expected_ids("orderRow", Q(transactions__status="succeeded"))
    assert (
        export_ids(api, worker, "orderRow", "format=json&transaction_status=succeeded") == expected
    )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the fast path is PostgreSQL's")
def test_a_to_many_filter_keeps_the_fast_path(orders):
    service = site.get("orderRow")
    export = ReportExport(
        service="orderRow",
        format="json",
        fields=list(service.fields),
        filters={"transaction_status": "succeeded"},
    )
    queryset = export_queryset(service, export)
    reader = get_reader(
        queryset, export.fields, get_writer_class("json")("orderRow", export.fields)
    )
    assert isinstance(reader, PostgresChunkReader)
    reader.close()
    assert (
        queryset.count()
        == Order.objects.filter(transactions__status="succeeded").distinct().count()
    )
    assert Transaction.objects.filter(status="succeeded").count() > queryset.count()
