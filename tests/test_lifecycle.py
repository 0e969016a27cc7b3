"""Every state of SPEC §3 and every transition between them, through the API, with a real
Redis and burst RQ workers in this process."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import clear_url_caches, include, path, set_script_prefix

from django_report_export import control, signals
from django_report_export.models import ReportExport, Status
from django_report_export.runs import base as runs_base
from django_report_export.runs.single import run_export
from testproject.shop.factories import ProductFactory
from testproject.shop.models import Product

from . import elsewhere_urls
from .support.polling import once_written, while_running

pytestmark = pytest.mark.django_db(transaction=True)


def download(api, service: str = "product", **params) -> bytes:
    response = api.get(f"/api/report/{service}/download", params)
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


@pytest.fixture
def products():
    return ProductFactory.create_batch(60)


@pytest.fixture
def small_chunks(settings):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 1, "CHECKPOINT_INTERVAL": 0}


@pytest.fixture
def received():
    seen: list[tuple[str, str, int]] = []

    def receiver(signal_name):
        def handler(sender, export, **kwargs):
            seen.append((signal_name, str(export.pk), export.status))

        return handler

    handlers = {
        name: receiver(name)
        for name in ("export_started", "export_finished", "export_canceled", "export_failed")
    }
    for name, handler in handlers.items():
        getattr(signals, name).connect(handler)
    yield seen
    for name, handler in handlers.items():
        getattr(signals, name).disconnect(handler)


def test_ready_before_anything_ran(api):
    body = api.get("/api/report/product/status").json()
    assert body["status"] == Status.READY
    assert body["status_name"] == "Ready"
    assert body["id"] is None
    assert body["file"] is None
    assert body["processed"] == 0
    assert body["progress"] == 0


def test_status_body_has_every_field_of_the_contract(api, products, worker):
    started = api.post("/api/report/product/start?format=csv&fields=id,sku,price&compression=gzip")
    assert started.status_code == 202
    body = started.json()
    assert set(body) >= {
        "service", "id", "status", "status_name", "format", "compression", "filters", "fields",
        "processed", "total", "progress", "rows_per_second", "eta_seconds", "started_at",
        "finished_at", "updated_at", "file", "file_size", "error",
    }  # fmt: skip
    assert body["status"] == Status.STARTING
    assert body["status_name"] == "Starting"
    assert body["service"] == "product"
    assert body["format"] == "csv"
    assert body["compression"] == "gzip"
    assert body["fields"] == ["id", "sku", "price"]
    worker()
    body = api.get("/api/report/product/status").json()
    assert body["status"] == Status.FINISHED
    assert body["status_name"] == "Finished"
    assert body["processed"] == body["total"] == 60
    assert body["progress"] == 100
    assert body["started_at"] <= body["finished_at"]
    assert body["file"] == "http://testserver/api/report/product/download"
    content = download(api)
    assert body["file_size"] == len(content)
    rows = list(csv.reader(io.StringIO(gzip.decompress(content).decode())))
    assert rows[0] == ["id", "sku", "price"]
    assert len(rows) == 61


def test_download_links_follow_the_script_prefix_and_the_urlconf(
    api, products, worker, settings, monkeypatch
):
    api.post("/api/report/product/start?format=csv")
    worker()
    export_id = api.get("/api/report/product/status").json()["id"]

    def links(path: str, script_name: str = "") -> tuple[str, str]:
        # What Django's WSGI handler does with a request's SCRIPT_NAME (the test client doesn't).
        set_script_prefix(f"{script_name}/")
        try:
            status = api.get(f"{path}/status").json()
            history = api.get(f"{path}/history").json()
        finally:
            set_script_prefix("/")
        return status["file"], history["results"][0]["file"]

    plain = "http://testserver/api/report/product/download"
    assert links("/api/report/product") == (plain, f"{plain}?id={export_id}")
    shop = "http://testserver/shop/api/report/product/download"
    assert links("/api/report/product", "/shop") == (shop, f"{shop}?id={export_id}")
    assert links("/api/report/product") == (plain, f"{plain}?id={export_id}")
    settings.ROOT_URLCONF = "tests.elsewhere_urls"
    moved = "http://testserver/exports/report/product/download"
    assert links("/exports/report/product") == (moved, f"{moved}?id={export_id}")
    listing = api.get("/exports/report/").json()
    assert {entry["url"] for entry in listing} >= {
        "http://testserver/exports/report/product/status"
    }
    # The same URLconf's patterns swapped, and Django's URL caches cleared.
    monkeypatch.setattr(
        elsewhere_urls, "urlpatterns", [path("files/", include("django_report_export.urls"))]
    )
    clear_url_caches()
    again = "http://testserver/files/report/product/download"
    assert links("/files/report/product") == (again, f"{again}?id={export_id}")


def test_filters_are_applied_and_reported(api, worker):
    ProductFactory.create_batch(5, is_active=True)
    ProductFactory.create_batch(3, is_active=False)
    body = api.post("/api/report/product/start?format=json&is_active=false").json()
    assert body["filters"] == {"is_active": "false"}
    worker()
    rows = json.loads(download(api))
    expected = set(Product.objects.filter(is_active=False).values_list("id", flat=True))
    assert {row["id"] for row in rows} == expected


def test_running_status_shows_progress_rate_and_eta(api, products, worker, small_chunks):
    api.post("/api/report/product/start?format=json")
    seen = {}

    def look(service):
        seen.update(control.get_status(service))

    poller = while_running("product", 10, look)
    worker()
    poller.join()
    assert poller.error is None
    assert seen["status"] == Status.RUNNING
    assert seen["processed"] >= 10
    assert seen["total"] == 60
    assert seen["rate"] > 0


def test_pause_and_resume(api, products, worker, small_chunks, received):
    uninterrupted = None
    api.post("/api/report/product/start?format=csv")
    worker()
    uninterrupted = download(api)

    api.post("/api/report/product/start?format=csv")
    poller = while_running("product", 20, control.pause)
    worker()
    poller.join()
    assert poller.error is None
    paused = api.get("/api/report/product/status").json()
    assert paused["status"] == Status.PAUSED
    assert paused["status_name"] == "Paused"
    assert 20 <= paused["processed"] < 60
    assert paused["file"] is None
    assert api.get("/api/report/product/download").status_code == 404

    resumed = api.post("/api/report/product/resume")
    assert resumed.status_code == 200
    assert resumed.json()["status"] == Status.STARTING
    worker()
    assert api.get("/api/report/product/status").json()["status"] == Status.FINISHED
    assert download(api) == uninterrupted
    names = [name for name, *_ in received]
    assert names == ["export_started", "export_finished", "export_started", "export_finished"]


@pytest.mark.parametrize(("export_format", "first_chunk"), [("csv", 4), ("json", 4), ("xlsx", 10)])
def test_a_run_reads_a_short_first_chunk_where_its_writer_allows(
    api, products, worker, settings, monkeypatch, export_format, first_chunk
):
    """A run's first chunk holds at most ``FIRST_CHUNK_ROWS`` rows, so that its first rows
    come sooner; xlsx, whose column widths its first chunk sets, reads a whole one. The file is
    the one a run of whole chunks writes."""
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 10, "CHECKPOINT_INTERVAL": 0}
    monkeypatch.setattr(runs_base, "FIRST_CHUNK_ROWS", 10)
    api.post(f"/api/report/product/start?format={export_format}")
    worker()
    whole_chunks = download(api)

    monkeypatch.setattr(runs_base, "FIRST_CHUNK_ROWS", 4)
    pausing = once_written(monkeypatch, "product", 1, control.pause)
    api.post(f"/api/report/product/start?format={export_format}")
    worker()
    pausing.join()
    assert pausing.error is None, pausing.error
    paused = api.get("/api/report/product/status").json()
    assert (paused["status"], paused["processed"]) == (Status.PAUSED, first_chunk)
    assert api.post("/api/report/product/resume").status_code == 200
    worker()
    assert api.get("/api/report/product/status").json()["status"] == Status.FINISHED
    assert download(api) == whole_chunks


def test_pause_before_the_worker_began_needs_no_worker(api, products, worker):
    api.post("/api/report/product/start?format=csv")
    body = api.post("/api/report/product/pause").json()
    assert body["status"] == Status.PAUSED
    worker()  # the queued job finds the export paused and does nothing
    assert api.get("/api/report/product/status").json()["status"] == Status.PAUSED
    assert api.post("/api/report/product/resume").json()["status"] == Status.STARTING
    worker()
    assert api.get("/api/report/product/status").json()["status"] == Status.FINISHED


def test_the_queued_job_of_a_paused_start_taking_the_slot_during_resume_keeps_the_row(
    api, products, worker, monkeypatch
):
    """The start's job, still queued when the export was paused, may take the slot between
    resume's transition and its write of the row. The row keeps that run's Running, and the
    run finishes the export (resume wrote Starting over it: the run found itself superseded,
    and the slot stayed Running with no worker)."""
    from django_report_export.runs.single import ExportRun
    from django_report_export.status import StatusStore

    api.post("/api/report/product/start?format=csv")
    assert api.post("/api/report/product/pause").json()["status"] == Status.PAUSED
    stale = ExportRun(ReportExport.objects.get())
    began: list[bool] = []
    transition = StatusStore.transition

    def taken_meanwhile(self, slot, values, **kwargs):
        result = transition(self, slot, values, **kwargs)
        if result.written and values.get("status") == Status.STARTING and not began:
            began.append(stale.begin())
        return result

    monkeypatch.setattr(StatusStore, "transition", taken_meanwhile)
    assert api.post("/api/report/product/resume").status_code == 200
    monkeypatch.undo()
    assert began == [True]
    stale.export_rows()
    worker()  # the start's and the resume's jobs find the slot no longer Starting
    assert api.get("/api/report/product/status").json()["status"] == Status.FINISHED
    assert ReportExport.objects.get().status == Status.FINISHED
    rows = list(csv.DictReader(io.StringIO(download(api).decode())))
    assert sorted(int(row["id"]) for row in rows) == sorted(product.pk for product in products)


@pytest.mark.parametrize("when", ["starting", "running", "paused"])
def test_cancel(api, products, worker, small_chunks, received, export_root, when):
    api.post("/api/report/product/start?format=csv")
    if when == "running":
        poller = while_running("product", 5, control.cancel)
        worker()
        poller.join()
        assert poller.error is None
        assert poller.result["status"] == Status.CANCELED
        body = api.get("/api/report/product/status").json()
    else:
        if when == "paused":
            poller = while_running("product", 5, control.pause)
            worker()
            poller.join()
            assert api.get("/api/report/product/status").json()["status"] == Status.PAUSED
        response = api.delete("/api/report/product/cancel")
        assert response.status_code == 200
        body = response.json()
    assert body["status"] == Status.CANCELED
    assert body["status_name"] == "Canceled"
    worker()
    status = api.get("/api/report/product/status").json()
    assert status["status"] == Status.CANCELED
    assert status["finished_at"]
    assert api.get("/api/report/product/download").status_code == 404
    assert api.delete("/api/report/product/cancel").status_code == 404
    export = ReportExport.objects.get()
    assert export.status == Status.CANCELED
    assert not export.file_name
    assert [path for path in export_root.rglob("*") if path.is_file()] == []
    assert [name for name, *_ in received] == ["export_started", "export_canceled"]


def test_start_while_running_cancels_the_old_export_first(api, products, worker, small_chunks):
    first = api.post("/api/report/product/start?format=csv").json()["id"]

    def restart(service):
        request = control.parse_request(service, {"format": ["json"]})
        return control.start(service, request)

    poller = while_running("product", 5, restart)
    worker()
    poller.join()
    assert poller.error is None
    second = poller.result["id"]
    assert second != first
    old = ReportExport.objects.get(pk=first)
    assert old.status == Status.CANCELED
    assert old.error == "Canceled by a newer start."
    assert not old.checkpoint
    worker()
    status = api.get("/api/report/product/status").json()
    assert status["id"] == str(second)
    assert status["status"] == Status.FINISHED
    assert len(json.loads(download(api))) == 60
    files = [p for p in (ReportExport.objects.get(pk=second).file_name,) if p]
    assert len(files) == 1


def test_start_while_starting_or_paused_replaces_it(api, products, worker):
    first = api.post("/api/report/product/start?format=csv").json()["id"]
    second = api.post("/api/report/product/start?format=json").json()["id"]
    assert ReportExport.objects.get(pk=first).status == Status.CANCELED
    api.post("/api/report/product/pause")
    third = api.post("/api/report/product/start?format=csv").json()
    assert third["status"] == Status.STARTING
    assert ReportExport.objects.get(pk=second).status == Status.CANCELED
    worker()
    assert api.get("/api/report/product/status").json()["id"] == third["id"]
    assert ReportExport.objects.filter(status=Status.FINISHED).count() == 1


def test_start_after_finish_starts_a_new_export(api, products, worker):
    first = api.post("/api/report/product/start?format=csv").json()["id"]
    worker()
    second = api.post("/api/report/product/start?format=csv").json()
    assert second["status"] == Status.STARTING
    assert second["id"] != first
    assert ReportExport.objects.get(pk=first).status == Status.FINISHED


def test_error_is_reported_with_its_reason(api, products, worker, settings, tmp_path, received):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    exports = settings.STORAGES["exports"]
    options = {**exports.get("OPTIONS", {}), "location": blocker / "exports"}
    settings.STORAGES = {**settings.STORAGES, "exports": {**exports, "OPTIONS": options}}
    api.post("/api/report/product/start?format=csv")
    export_id = str(ReportExport.objects.get().pk)
    with pytest.raises(NotADirectoryError):
        run_export(export_id)
    body = api.get("/api/report/product/status").json()
    assert body["status"] == Status.ERROR
    assert body["status_name"] == "Error"
    assert "Error" in body["error"] or "directory" in body["error"]
    assert body["file"] is None
    assert [name for name, *_ in received] == ["export_started", "export_failed"]
    worker()  # the queued job finds the export ended and does nothing
    assert api.get("/api/report/product/status").json()["status"] == Status.ERROR


def test_history_lists_exports_newest_first_and_paginates(api, products, worker):
    ids = []
    for export_format in ("csv", "json", "csv"):
        ids.append(api.post(f"/api/report/product/start?format={export_format}").json()["id"])
        worker()
    page = api.get("/api/report/product/history?page_size=2").json()
    assert page["count"] == 3
    assert [item["id"] for item in page["results"]] == ids[::-1][:2]
    assert page["next"]
    assert page["results"][0]["created_by"] == "boss"
    older = api.get(page["next"]).json()["results"]
    assert [item["id"] for item in older] == ids[:1]
    assert older[0]["file"].endswith(f"/download?id={ids[0]}")
    assert api.get(older[0]["file"]).status_code == 200


def test_status_reads_no_table_but_authentication(api, products, worker):
    api.post("/api/report/product/start?format=csv")
    worker()
    api.get("/api/report/product/status")  # the slot is in Redis now
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/api/report/product/status").status_code == 200
    tables = " ".join(query["sql"] for query in queries.captured_queries)
    assert "report_export" not in tables
    assert "shop_" not in tables
    assert len(queries.captured_queries) <= 2  # the session and its user


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"name": "Café ☕ \u2028", "status": ["paid", "shipped"]},
        # Read by json: orjson refuses the first two and reads the others as floats.
        {"note": "\ud800 lone surrogate"},
        {"ratio": math.inf},
        {"total__gte": 2**70 + 1, "total__lte": -(2**63) - 1, "id": 10**18},
    ],
)
def test_the_status_hash_gives_back_what_was_written(redis_db, filters):
    store = control.get_store()
    fields = ["id", "name", "née"]
    store.restore(
        "product",
        {
            "id": "x",
            "status": Status.PAUSED,
            "filters": filters,
            "fields": fields,
            "processed": 7,
            "rate": 1.5,
        },
    )
    status = store.read("product")
    assert status["filters"] == filters
    assert [type(value) for value in status["filters"].values()] == [
        type(value) for value in filters.values()
    ]
    assert status["fields"] == fields
    assert (status["status"], status["processed"], status["rate"]) == (Status.PAUSED, 7, 1.5)
    assert status["total"] is None


def test_status_is_rebuilt_from_the_database_after_a_redis_flush(api, products, worker, redis_db):
    api.post("/api/report/product/start?format=csv")
    worker()
    before = api.get("/api/report/product/status").json()
    redis_db.flushdb()
    after = api.get("/api/report/product/status").json()
    for key in ("id", "status", "processed", "total", "file", "file_size", "finished_at"):
        assert after[key] == before[key], key
    assert api.get("/api/report/product/download").status_code == 200


def test_paused_export_survives_a_redis_flush(api, products, worker, small_chunks, redis_db):
    api.post("/api/report/product/start?format=csv")
    worker()
    whole = download(api)
    api.post("/api/report/product/start?format=csv")
    poller = while_running("product", 10, control.pause)
    worker()
    poller.join()
    redis_db.flushdb()
    assert api.get("/api/report/product/status").json()["status"] == Status.PAUSED
    assert api.post("/api/report/product/resume").status_code == 200
    worker()
    assert download(api) == whole
