"""The total an export shows while it runs: the rows counted, or on PostgreSQL above
``COUNT_ESTIMATE_ABOVE`` the planner's estimate (no second scan of a big table before the
first row); once Finished, the rows the file holds."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_report_export import control
from django_report_export.counting import count_rows, planner_rows
from django_report_export.models import Status
from django_report_export.presentation import status_body
from django_report_export.registry import site
from testproject.shop.factories import ProductFactory
from testproject.shop.models import Product

from .support.polling import while_running

pytestmark = pytest.mark.django_db(transaction=True)
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the planner's estimate is PostgreSQL's"
)


@pytest.fixture
def products() -> list[Product]:
    made = ProductFactory.create_batch(60)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE shop_product")
    return made


def counted_by(settings: Any, above: int | None) -> tuple[int, list[str]]:
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "COUNT_ESTIMATE_ABOVE": above}
    with CaptureQueriesContext(connection) as queries:
        rows = count_rows(Product.objects.all())
    return rows, [query["sql"] for query in queries.captured_queries]


def test_rows_are_counted_at_or_below_the_threshold(products, settings):
    rows, queries = counted_by(settings, None)
    assert rows == 60
    assert any("COUNT(" in sql for sql in queries)
    rows, _ = counted_by(settings, 1_000_000)
    assert rows == 60


@on_postgresql
def test_above_the_threshold_postgresql_estimates_and_reads_nothing(products, settings):
    rows, queries = counted_by(settings, 10)
    assert rows == planner_rows(Product.objects.all()) > 10
    assert queries
    assert all(sql.startswith("EXPLAIN") for sql in queries)
    assert not any("COUNT(" in sql for sql in queries)


@on_postgresql
def test_an_estimated_total_while_running_ends_as_the_rows_written(products, settings, api, worker):
    # 20 rows deleted after ANALYZE: the planner still expects about 60.
    Product.objects.filter(pk__in=[product.pk for product in products[:20]]).delete()
    estimate = planner_rows(Product.objects.all())
    assert estimate != 40
    settings.REPORT_EXPORT = {
        **settings.REPORT_EXPORT,
        "COUNT_ESTIMATE_ABOVE": 0,
        "CHUNK_SIZE": 5,
        "CHECKPOINT_INTERVAL": 0,
    }
    assert api.post("/api/report/product/start?format=csv").status_code == 202
    poller = while_running(
        "product", 5, lambda service: status_body(service, control.get_status(service))
    )
    worker()
    poller.join(30)
    assert poller.error is None, poller.error
    assert poller.result["total"] == estimate
    assert poller.result["progress"] < 100
    status = api.get("/api/report/product/status").json()
    assert status["status"] == Status.FINISHED
    assert status["total"] == status["processed"] == 40
    data = b"".join(api.get("/api/report/product/download").streaming_content)
    assert len(list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))) == 41


def test_progress_stays_below_100_until_finished():
    service = site.get("product")
    running = status_body(service, {"status": Status.RUNNING, "processed": 70, "total": 60})
    assert running["progress"] == 99.9
    finished = status_body(service, {"status": Status.FINISHED, "processed": 70, "total": 70})
    assert finished["progress"] == 100.0


@on_postgresql
def test_a_filter_no_row_can_match_is_estimated_at_none(products, settings):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "COUNT_ESTIMATE_ABOVE": 0}
    assert planner_rows(Product.objects.filter(stock__lt=-(10**20))) == 0
    assert count_rows(Product.objects.filter(stock__lt=-(10**20))) == 0
