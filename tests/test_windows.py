"""Incremental windows (docs/scheduled-and-incremental.md): ``since=last`` and ``from``/``to``
on a service with an ``incremental_field``, each bad value a 400 naming its parameter; five
successive ``since=last`` windows with rows written between and during the exports (a pause,
a write mid-run, a canceled start, a failed run and its retry) whose files together hold every
row of the table exactly once; the window on the record, in the status body, the history, the
command, the admin and the schema; and the PostgreSQL fast path reading inside the window."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from collections import Counter
from itertools import pairwise
from typing import Any

import pytest
from django.core import checks
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from django_report_export import control
from django_report_export.models import ReportExport, Status
from django_report_export.registry import ExportService, site
from django_report_export.runs.single import ExportRun
from testproject.shop.factories import OrderFactory, ProductFactory
from testproject.shop.models import Order, Product

from .support.polling import once_written
from .support.users import make_user
from .support.workers import WorkerProcess, wait_for
from .test_api_schema import parameters, served_schema
from .test_commands import run
from .test_retry import outage  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)

UTC = dt.UTC
SMALL = {"CHUNK_SIZE": 4, "CHECKPOINT_INTERVAL": 0}


def use(settings: Any, **values: Any) -> None:
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **values}


def start(api: Any, query: str, service: str = "orderRow") -> dict[str, Any]:
    response = api.post(f"/api/report/{service}/start?{query}")
    assert response.status_code == 202, response.content
    return response.json()


def status(api: Any, service: str = "orderRow") -> dict[str, Any]:
    return api.get(f"/api/report/{service}/status").json()


def download_ids(api: Any, service: str = "orderRow") -> list[int]:
    response = api.get(f"/api/report/{service}/download")
    assert response.status_code == 200, response.content
    lines = b"".join(response.streaming_content).decode().splitlines()
    return [json.loads(line)["id"] for line in lines]


def new_orders(count: int) -> list[Order]:
    """Orders written now: their ``created_at`` is the instant they are written."""
    return [OrderFactory(created_at=timezone.now()) for _ in range(count)]


def finished(api: Any, worker: Any) -> list[int]:
    worker()
    body = status(api)
    assert body["status"] == Status.FINISHED, body
    return download_ids(api)


# --- 400 naming the parameter --------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "query", "parameter"),
    [
        ("orderRow", "since=first", "since"),
        ("orderRow", "since=", "since"),
        ("orderRow", "since=last&since=last", "since"),
        ("orderRow", "from=yesterday", "from"),
        ("orderRow", "from=2026-13-01", "from"),
        ("orderRow", "to=2026-01-01T25:00", "to"),
        ("orderRow", "to=", "to"),
        ("orderRow", "from=2026-01-01&from=2026-01-02", "from"),
        ("product", "since=last", "since"),
        ("product", "from=2026-01-01T00:00:00Z", "from"),
        ("product", "to=2026-01-01T00:00:00Z", "to"),
    ],
)
def test_a_bad_window_is_a_400_naming_the_parameter(
    api: Any, service: str, query: str, parameter: str
) -> None:
    response = api.post(f"/api/report/{service}/start?format=json&{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["type"] == "invalid"
    assert list(body["errors"]) == [parameter]
    assert parameter in body["detail"]
    assert not ReportExport.objects.exists()


def test_a_to_after_the_start_is_the_start(api, worker) -> None:
    before = timezone.now()
    body = start(api, "format=jsonl&to=2999-01-01T00:00:00Z")
    assert before <= at(body["window"]["to"]) <= timezone.now()
    worker()
    later = new_orders(1)
    follow = start(api, "format=jsonl&since=last")
    assert follow["window"]["from"] == body["window"]["to"]
    assert finished(api, worker) == [later[0].pk]


def test_a_refused_window_leaves_the_running_export_alone(api) -> None:
    first = start(api, "format=jsonl&since=last")
    response = api.post("/api/report/orderRow/start?format=jsonl&from=yesterday")
    assert response.status_code == 400
    assert status(api)["id"] == first["id"]
    assert status(api)["status"] == Status.STARTING


# --- five successive windows: every row once ------------------------------------------------


@pytest.fixture
def write_during_run(monkeypatch: Any) -> dict[str, Any]:
    """While ``plan["rows"]`` is set, the next run writes that many orders after its first
    chunk: rows written during an export."""
    plan: dict[str, Any] = {"rows": 0, "written": []}
    chunk_written = ExportRun.chunk_written

    def writing(run: ExportRun) -> None:
        chunk_written(run)
        if plan["rows"]:
            count, plan["rows"] = plan["rows"], 0
            plan["written"] += new_orders(count)

    monkeypatch.setattr(ExportRun, "chunk_written", writing)
    return plan


def test_five_since_last_windows_hold_every_row_once(
    api,
    worker,
    settings,
    monkeypatch,
    write_during_run,
    outage,  # noqa: F811
) -> None:
    use(settings, **SMALL)
    OrderFactory.create_batch(12)  # created in the past
    files: list[list[int]] = []

    # 1: every row so far.
    window = start(api, "format=jsonl&since=last")["window"]
    assert window["field"] == "created_at"
    assert window["from"] is None
    files.append(finished(api, worker))
    assert sorted(files[0]) == sorted(Order.objects.values_list("pk", flat=True))
    new_orders(5)

    # 2: paused mid-export; rows written while it is paused belong to the next window.
    start(api, "format=jsonl&since=last")
    pausing = once_written(monkeypatch, "orderRow", 4, control.pause)
    worker()
    pausing.join(30)
    assert pausing.error is None
    assert status(api)["status"] == Status.PAUSED
    during_pause = new_orders(3)
    assert api.post("/api/report/orderRow/resume").status_code == 200
    files.append(finished(api, worker))
    assert not set(files[1]) & {order.pk for order in during_pause}
    second = ReportExport.objects.get(pk=status(api)["id"])
    assert second.window_from == ReportExport.objects.order_by("created_at")[0].window_to

    # A canceled start is not "last".
    start(api, "format=jsonl&since=last")
    assert api.delete("/api/report/orderRow/cancel").status_code == 200
    new_orders(2)

    # 3: rows written while the export runs belong to the next window.
    write_during_run["rows"] = 4
    third = start(api, "format=jsonl&since=last")
    assert third["window"]["from"] == second.window().get("to")
    files.append(finished(api, worker))
    assert len(write_during_run["written"]) == 4
    assert not set(files[2]) & {order.pk for order in write_during_run["written"]}
    new_orders(3)

    # 4: fails mid-export, is retried: the retry reads the same window, and rows written
    # between the failure and the retry belong to the next one.
    outage.on, outage.rows = True, 4
    start(api, "format=jsonl&since=last")
    worker()
    assert status(api)["status"] == Status.ERROR
    outage.over()
    between = new_orders(2)
    assert api.post("/api/report/orderRow/retry").status_code == 202
    files.append(finished(api, worker))
    assert not set(files[3]) & {order.pk for order in between}
    new_orders(4)

    # 5: the rest.
    files.append(finished_start(api, worker))

    counts = Counter(pk for ids in files for pk in ids)
    assert set(counts.values()) == {1}, [pk for pk, n in counts.items() if n > 1]
    assert sorted(counts) == sorted(Order.objects.values_list("pk", flat=True))
    assert all(files), [len(ids) for ids in files]
    windows = [
        export.window()
        for export in ReportExport.objects.filter(status=Status.FINISHED).order_by("created_at")
    ]
    assert len(windows) == 5
    for earlier, later in pairwise(windows):
        assert later["from"] == earlier["to"]


def finished_start(api: Any, worker: Any) -> list[int]:
    start(api, "format=jsonl&since=last")
    return finished(api, worker)


def test_failed_and_canceled_windows_are_not_last(api, worker, settings, outage) -> None:  # noqa: F811
    use(settings, **SMALL)
    OrderFactory.create_batch(10)
    first = ReportExport.objects.get(pk=finished_start_id(api, worker))
    new_orders(2)
    outage.on, outage.rows = True, 0
    start(api, "format=jsonl&since=last")
    worker()
    failed = ReportExport.objects.get(status=Status.ERROR)
    assert failed.window_from == first.window_to
    outage.over()
    start(api, "format=jsonl&since=last")
    assert api.delete("/api/report/orderRow/cancel").status_code == 200
    canceled = ReportExport.objects.get(status=Status.CANCELED)
    assert canceled.window_from == first.window_to
    body = start(api, "format=jsonl&since=last")
    assert body["window"]["from"] == first.window()["to"]
    ids = finished(api, worker)
    assert len(ids) == 2


def finished_start_id(api: Any, worker: Any) -> str:
    start(api, "format=jsonl&since=last")
    worker()
    return status(api)["id"]


def test_since_last_follows_each_users_own_windows_when_slots_are_per_user(
    api, worker, settings
) -> None:
    use(settings, SLOT_SCOPE="user")
    OrderFactory.create_batch(3)
    clerk = APIClient()
    clerk.force_login(make_user("clerk", "shop.view_order"))
    start(api, "format=jsonl&since=last")
    assert len(finished(api, worker)) == 3
    added = new_orders(2)
    start(clerk, "format=jsonl&since=last")  # the clerk's first window: every row
    assert len(finished(clerk, worker)) == 5
    start(api, "format=jsonl&since=last")
    assert sorted(finished(api, worker)) == sorted(order.pk for order in added)
    boss = ReportExport.objects.filter(created_by__username="boss").order_by("created_at")
    assert boss[1].window_from == boss[0].window_to


# --- explicit bounds ------------------------------------------------------------------------


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_from_is_included_to_is_excluded_and_naive_bounds_are_in_the_timezone(api, worker) -> None:
    stamps = ["2026-03-01T08:59:59+00:00", "2026-03-01T09:00:00+00:00", "2026-03-01T11:59:59+00:00"]
    stamps += ["2026-03-01T12:00:00+00:00"]
    orders = [OrderFactory(created_at=at(stamp)) for stamp in stamps]
    # 10:00 and 13:00 in Berlin (UTC+1 in March): 09:00 to 12:00 UTC.
    body = start(
        api, "format=jsonl&from=2026-03-01T10:00:00&to=2026-03-01T13:00&timezone=Europe/Berlin"
    )
    assert body["window"] == {
        "field": "created_at",
        "from": "2026-03-01T09:00:00+00:00",
        "to": "2026-03-01T12:00:00+00:00",
    }
    assert finished(api, worker) == [orders[1].pk, orders[2].pk]


def test_an_offset_whose_plus_the_query_turned_into_a_space_is_read(api, worker) -> None:
    inside = OrderFactory(created_at=at("2026-03-01T09:30:00+00:00"))
    OrderFactory(created_at=at("2026-03-01T08:30:00+00:00"))
    body = start(api, "format=jsonl&from=2026-03-01T10:00:00+01:00")  # "+" as a space
    assert body["window"]["from"] == "2026-03-01T09:00:00+00:00"
    assert finished(api, worker) == [inside.pk]


def test_from_alone_ends_at_the_start_and_to_alone_is_unbounded_below(api, worker) -> None:
    old = OrderFactory(created_at=at("2020-01-01T00:00:00+00:00"))
    recent = OrderFactory(created_at=at("2026-01-01T00:00:00+00:00"))
    before = timezone.now()
    body = start(api, "format=jsonl&from=2025-01-01T00:00:00Z")
    assert before <= at(body["window"]["to"]) <= timezone.now()
    assert finished(api, worker) == [recent.pk]
    body = start(api, "format=jsonl&to=2025-01-01T00:00:00Z")
    assert body["window"]["from"] is None
    assert finished(api, worker) == [old.pk]


def test_since_last_with_from_starts_at_the_later_and_takes_a_to(api, worker) -> None:
    OrderFactory(created_at=at("2026-01-10T00:00:00+00:00"))
    first = start(api, "format=jsonl&to=2026-01-15T00:00:00Z")
    assert len(finished(api, worker)) == 1
    middle = OrderFactory(created_at=at("2026-01-20T00:00:00+00:00"))
    late = OrderFactory(created_at=at("2026-02-10T00:00:00+00:00"))
    # The last window ended on the 15th: from the 1st is earlier, so the window starts there.
    body = start(api, "format=jsonl&since=last&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00Z")
    assert body["window"]["from"] == first["window"]["to"]
    assert body["window"]["to"] == "2026-02-01T00:00:00+00:00"
    assert finished(api, worker) == [middle.pk]
    # A from later than the last window's end: the rows between are not exported.
    body = start(api, "format=jsonl&since=last&from=2026-02-05T00:00:00Z")
    assert body["window"]["from"] == "2026-02-05T00:00:00+00:00"
    assert finished(api, worker) == [late.pk]


@pytest.mark.parametrize(
    "query",
    [
        "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=2999-01-01T00:00:00Z",  # to is the start, earlier
    ],
)
def test_a_from_at_or_after_to_is_an_empty_window_that_moves_no_last(api, worker, query) -> None:
    OrderFactory(created_at=at("2026-01-01T00:00:00+00:00"))
    first = start(api, "format=jsonl&to=2026-01-01T12:00:00Z")
    assert len(finished(api, worker)) == 1
    start(api, f"format=jsonl&{query}")
    assert finished(api, worker) == []
    after = new_orders(1)
    follow = start(api, "format=jsonl&since=last")
    assert follow["window"]["from"] is not None
    assert at(follow["window"]["from"]) >= at(first["window"]["to"])
    assert after[0].pk in finished(api, worker)


def test_rows_whose_field_is_null_are_in_no_window(api, worker) -> None:
    class PaidOrders(ExportService):
        model = Order
        fields = ("id", "paid_at")
        formats = ("jsonl",)
        incremental_field = "paid_at"

    site.register("paidOrder", PaidOrders)
    try:
        paid = OrderFactory(paid_at=at("2026-01-01T00:00:00+00:00"), shipped_at=None)
        OrderFactory(paid_at=None, shipped_at=None)
        start(api, "format=jsonl&since=last", service="paidOrder")
        worker()
        assert download_ids(api, "paidOrder") == [paid.pk]
        start(api, "format=jsonl", service="paidOrder")  # no window: every row
        worker()
        assert len(download_ids(api, "paidOrder")) == 2
    finally:
        site.unregister("paidOrder")


# --- shown ----------------------------------------------------------------------------------


def test_the_window_in_status_history_admin_and_command(api, worker) -> None:
    OrderFactory.create_batch(3)
    body = start(api, "format=jsonl&since=last")
    worker()
    export = ReportExport.objects.get()
    expected = {"field": "created_at", "from": None, "to": export.window_to.isoformat()}
    assert body["window"] == expected
    assert status(api)["window"] == expected
    start(api, "format=jsonl")
    worker()
    history = api.get("/api/report/orderRow/history").json()["results"]
    assert [entry["window"] for entry in history] == [None, expected]
    assert status(api)["window"] is None
    page = api.get(f"/admin/django_report_export/reportexport/{export.pk}/change/")
    assert page.status_code == 200
    assert "created_at from" in page.content.decode()

    code, out, err = run("start", "orderRow", "--format", "jsonl", "--since", "last")
    assert code == 0, err
    assert "window: created_at in [" in out
    code, out, err = run("start", "orderRow", "--format", "jsonl", "--since", "first")
    assert code != 0
    code, out, err = run("start", "orderRow", "--format", "jsonl", "--from", "Feb 1st")
    assert code != 0
    assert "--from" in err
    code, out, err = run("start", "product", "--format", "json", "--to", "2026-01-01")
    assert code != 0
    assert "--to" in err


def test_the_schema_lists_the_window_parameters_only_where_there_is_a_field(api) -> None:
    document = served_schema(api)
    order = parameters(document, "/api/report/orderRow/start", "post")
    assert order["since"]["schema"] == {"type": "string", "enum": ["last"]}
    assert order["from"]["schema"]["format"] == "date-time"
    assert "to" in order
    product = parameters(document, "/api/report/product/start", "post")
    assert not {"since", "from", "to"} & set(product)


def test_the_browsable_start_form_offers_the_window_on_incremental_services(api, worker):
    html = {"HTTP_ACCEPT": "text/html"}
    page = api.get("/api/report/orderRow/start", **html).content.decode()
    form = page[page.index('id="post-object-form"') :]
    for name in ("since", "from", "to"):
        assert f'name="{name}"' in form, name
    page = api.get("/api/report/product/start", **html).content.decode()
    form = page[page.index('id="post-object-form"') :]
    assert 'name="since"' not in form
    OrderFactory(created_at=at("2026-01-01T00:00:00+00:00"))
    inside = OrderFactory(created_at=at("2026-02-01T00:00:00+00:00"))
    data = {"format": "jsonl", "since": "", "from": "2026-01-15T00:00", "to": ""}
    response = api.post("/api/report/orderRow/start", data, format="multipart", **html)
    assert response.status_code == 202
    assert ReportExport.objects.get().window_from == at("2026-01-15T00:00:00+00:00")
    assert finished(api, worker) == [inside.pk]


def test_the_check_refuses_a_missing_or_non_datetime_field() -> None:
    class Missing(ExportService):
        model = Order
        fields = ("id",)
        incremental_field = "nothing_here"

    class NotDatetime(ExportService):
        model = Order
        fields = ("id",)
        incremental_field = "total"

    class Related(ExportService):
        model = Order
        fields = ("id",)
        incremental_field = "customer__created_at"

    for name, service in [("noField", Missing), ("notDatetime", NotDatetime), ("rel", Related)]:
        site.register(name, service)
    try:
        found = [m for m in checks.run_checks() if m.id == "django_report_export.E032"]
    finally:
        for name in ("noField", "notDatetime", "rel"):
            site.unregister(name)
    messages = sorted(message.msg for message in found)
    assert len(messages) == 2, messages
    assert "does not resolve" in messages[0]
    assert "not a DateTimeField" in messages[1]


# --- the PostgreSQL fast path ---------------------------------------------------------------


def test_the_fast_path_reads_inside_the_window(api, worker) -> None:
    class NewProducts(ExportService):
        model = Product
        fields = ("id", "sku", "name")
        formats = ("csv",)
        incremental_field = "created_at"

    site.register("newProduct", NewProducts)
    try:
        ProductFactory(created_at=at("2026-01-01T00:00:00+00:00"))
        inside = ProductFactory(created_at=at("2026-02-01T00:00:00+00:00"))
        ProductFactory(created_at=at("2026-03-01T00:00:00+00:00"))
        query = "format=csv&from=2026-01-15T00:00:00Z&to=2026-03-01T00:00:00Z"
        start(api, query, service="newProduct")
        worker()
        response = api.get("/api/report/newProduct/download")
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert [row[0] for row in rows[1:]] == [str(inside.pk)]
        reader = ReportExport.objects.get().reader
        assert reader == ("postgresql-copy" if connection.vendor == "postgresql" else "generic")
    finally:
        site.unregister("newProduct")


def test_the_status_shows_the_window_without_reading_exports(api, worker) -> None:
    OrderFactory.create_batch(2)
    start(api, "format=jsonl&since=last")
    worker()
    status(api)  # the slot is in Redis now
    with CaptureQueriesContext(connection) as queries:
        window = status(api)["window"]
    assert window["field"] == "created_at"
    tables = " ".join(query["sql"] for query in queries.captured_queries)
    assert "report_export" not in tables
    assert len(queries.captured_queries) <= 2  # the session and its user


def test_every_shard_reads_inside_the_window(api, worker, settings, caplog) -> None:
    old = OrderFactory.create_batch(6, created_at=at("2020-01-01T00:00:00+00:00"))
    inside = OrderFactory.create_batch(9, created_at=at("2026-01-01T00:00:00+00:00"))
    OrderFactory.create_batch(6, created_at=at("2026-06-01T00:00:00+00:00"))
    use(settings, SHARD_ROWS=3, CHUNK_SIZE=2)
    start(api, "format=jsonl&from=2025-01-01T00:00:00Z&to=2026-06-01T00:00:00Z")
    with caplog.at_level(logging.INFO, logger="django_report_export"):
        worker()
    began = [m for m in caplog.messages if " shard " in m and " began " in m]
    assert len(began) == 3  # the window's 9 rows, by SHARD_ROWS
    ids = download_ids(api)
    assert sorted(ids) == sorted(order.pk for order in inside)
    assert not set(ids) & {order.pk for order in old}


# --- a killed worker ------------------------------------------------------------------------

FAST_FAILURE = {
    "CHUNK_SIZE": 2,
    "CHECKPOINT_INTERVAL": 0,
    "HEARTBEAT_INTERVAL": 0.2,
    "STALE_AFTER": 1.5,
}


@pytest.mark.slow
def test_a_killed_workers_continuation_reads_the_same_window(api, worker, settings, tmp_path):
    use(settings, **FAST_FAILURE)
    call_command("seed_shop", orders=600, seed=11, verbosity=0)
    seeded = sorted(Order.objects.values_list("pk", flat=True))
    start(api, "format=jsonl&since=last")
    with WorkerProcess(tmp_path / "worker-1.log", **FAST_FAILURE) as first:
        wait_for(lambda: status(api)["processed"] >= 100)
        first.kill()
    assert status(api)["status"] == Status.RUNNING
    during = {order.pk for order in new_orders(4)}
    with WorkerProcess(tmp_path / "worker-2.log", **FAST_FAILURE):
        wait_for(lambda: status(api)["status"] != Status.RUNNING or None, timeout=30)
        wait_for(lambda: status(api)["status"] == Status.FINISHED, timeout=60)
    assert ReportExport.objects.get(status=Status.FINISHED).retries == 1
    first_window = download_ids(api)
    assert sorted(first_window) == seeded
    second_window = finished_start(api, worker)
    assert sorted(second_window) == sorted(during)
