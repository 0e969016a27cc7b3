"""Retry of an export in Error (``POST report/{service}/retry``, the command verb, the admin
button) and what a finished export's status says of its file (``sha256``, ``expires_at``),
with a real Redis and burst RQ workers in this process. The database outage is injected at
the chunk read: every reconnect attempt of the run fails, as when the database stays away
longer than they last."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import OperationalError

from django_report_export import signals
from django_report_export.models import ReportExport, ReportExportShard, Status
from django_report_export.runs import base
from django_report_export.runs.base import ChunkedRun
from testproject.shop.factories import ProductFactory

from .test_commands import run

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 60
SMALL = {"CHUNK_SIZE": 4, "CHECKPOINT_INTERVAL": 0}


@pytest.fixture
def products():
    return ProductFactory.create_batch(ROWS)


@pytest.fixture
def small_chunks(settings):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **SMALL}


@pytest.fixture
def outage(monkeypatch):
    """Once ``on``, the database goes away when a run has written ``rows`` rows and stays
    away for every reconnect attempt; ``outage.over()`` brings it back."""

    class Outage:
        rows = 20
        on = False
        failed_reads = 0

        def over(self) -> None:
            self.on = False

    state = Outage()
    real = ChunkedRun.read_chunk
    monkeypatch.setattr(base, "DB_ATTEMPTS", 2)  # one reconnect,
    monkeypatch.setattr(base, "DB_RETRY_SECONDS", 0.05)  # after 50 ms

    def read_chunk(self: ChunkedRun, reader: Any, chunk_size: int) -> Any:
        if state.on and self.processed >= state.rows:

            def refused() -> Any:
                state.failed_reads += 1
                raise OperationalError("server closed the connection unexpectedly")

            return self.reconnecting(refused, what="reading")
        return real(self, reader, chunk_size)

    monkeypatch.setattr(ChunkedRun, "read_chunk", read_chunk)
    return state


def download(api, service: str = "product", **params: Any) -> bytes:
    response = api.get(f"/api/report/{service}/download", params)
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def status(api, service: str = "product") -> dict[str, Any]:
    return api.get(f"/api/report/{service}/status").json()


def files_of(root: Path, export: ReportExport) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and str(export.pk) in str(p)
    )


def uninterrupted(api, worker, query: str, service: str = "product") -> bytes:
    assert api.post(f"/api/report/{service}/start?{query}").status_code == 202
    worker()
    return download(api, service)


def fail_mid_export(api, worker, outage, query: str, service: str = "product") -> ReportExport:
    outage.on = True
    assert api.post(f"/api/report/{service}/start?{query}").status_code == 202
    worker()
    assert outage.failed_reads == 2
    export = ReportExport.objects.get(status=Status.ERROR)
    assert "OperationalError" in export.error
    return export


@pytest.mark.parametrize("query", ["format=csv", "format=json&compression=gzip", "format=xlsx"])
def test_retry_after_a_database_outage_is_byte_identical(
    api, worker, products, small_chunks, outage, export_root, query
):
    expected = uninterrupted(api, worker, query)
    failed = fail_mid_export(api, worker, outage, query)
    body = status(api)
    assert body["status"] == Status.ERROR
    assert body["file"] is None
    assert body["sha256"] is None
    kept = failed.checkpoint["parts"]
    assert failed.checkpoint["processed"] >= outage.rows
    assert files_of(export_root, failed) == sorted(kept)  # the checkpoint's parts only
    assert api.get("/api/report/product/download").status_code == 404

    outage.over()
    retried = api.post("/api/report/product/retry")
    assert retried.status_code == 202, retried.content
    body = retried.json()
    assert body["id"] == str(failed.pk)
    assert body["status"] == Status.STARTING
    assert body["error"] is None
    assert body["finished_at"] is None
    assert body["processed"] == failed.checkpoint["processed"]
    worker()
    body = status(api)
    assert body["status"] == Status.FINISHED, body
    data = download(api)
    assert data == expected
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    finished = ReportExport.objects.get(pk=failed.pk)
    assert finished.processed == ROWS
    assert finished.retries == 0
    assert files_of(export_root, finished) == [finished.file_name]


def test_retry_continues_from_the_checkpoint_in_a_new_run(
    api, worker, products, small_chunks, outage, caplog
):
    caplog.set_level("INFO", logger="django_report_export")
    failed = fail_mid_export(api, worker, outage, "format=csv")
    outage.over()
    api.post("/api/report/product/retry")
    worker()
    began = [r.getMessage().split() for r in caplog.records if "began at row" in r.getMessage()]
    # Export <id> run <token> began at row <n> on <slot>.
    assert [words[7] for words in began] == ["0", str(failed.checkpoint["processed"])]
    assert began[0][3] != began[1][3]


def test_retry_sends_the_started_signal_again(api, worker, products, small_chunks, outage):
    fail_mid_export(api, worker, outage, "format=csv")
    outage.over()
    seen: list[int] = []

    def started(sender: Any, export: ReportExport, **kwargs: Any) -> None:
        seen.append(export.status)

    signals.export_started.connect(started)
    try:
        api.post("/api/report/product/retry")
    finally:
        signals.export_started.disconnect(started)
    assert seen == [Status.STARTING]


@pytest.mark.parametrize("state", ["ready", "starting", "finished", "canceled"])
def test_retry_when_nothing_is_in_error_is_404(api, worker, products, state):
    if state != "ready":
        api.post("/api/report/product/start?format=csv")
    if state == "finished":
        worker()
    if state == "canceled":
        api.delete("/api/report/product/cancel")
    before = status(api)
    response = api.post("/api/report/product/retry")
    assert response.status_code == 404
    assert response.json()["type"]
    assert status(api) == before


def test_a_new_start_deletes_what_the_failed_export_kept(
    api, worker, products, small_chunks, outage, export_root
):
    failed = fail_mid_export(api, worker, outage, "format=csv")
    assert files_of(export_root, failed)
    outage.over()
    api.post("/api/report/product/start?format=csv")
    assert files_of(export_root, failed) == []
    assert ReportExport.objects.get(pk=failed.pk).checkpoint == {}
    worker()
    assert api.post("/api/report/product/retry").status_code == 404  # Finished now


def test_cleanup_deletes_the_failed_export_and_its_parts(
    api, worker, products, small_chunks, outage, export_root
):
    failed = fail_mid_export(api, worker, outage, "format=csv")
    call_command("report_export", "cleanup", "--days", "0", verbosity=0)
    assert not ReportExport.objects.filter(pk=failed.pk).exists()
    assert files_of(export_root, failed) == []


def test_retry_of_a_sharded_export_continues_its_shards(
    api, worker, settings, monkeypatch, export_root
):
    call_command("seed_shop", orders=120, seed=7, verbosity=0)
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 7, "CHECKPOINT_INTERVAL": 0}
    expected = uninterrupted(api, worker, "format=xml", service="orderRow")
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "SHARD_ROWS": 40}
    failing = {"on": True}
    failing_read = ChunkedRun.read_chunk

    def read_chunk(self: ChunkedRun, reader: Any, chunk_size: int) -> Any:
        shard = getattr(self, "shard", None)
        if failing["on"] and shard is not None and shard.index == 1 and self.processed >= 14:
            raise OperationalError("the database went away")
        return failing_read(self, reader, chunk_size)

    monkeypatch.setattr(ChunkedRun, "read_chunk", read_chunk)
    api.post("/api/report/orderRow/start?format=xml")
    worker()
    failed = ReportExport.objects.get(status=Status.ERROR)
    shards = list(ReportExportShard.objects.filter(export=failed).order_by("index"))
    assert len(shards) == 3
    assert shards[1].checkpoint["processed"] >= 14
    assert not shards[1].done
    failing["on"] = False
    assert api.post("/api/report/orderRow/retry").status_code == 202
    worker()
    body = status(api, "orderRow")
    assert body["status"] == Status.FINISHED, body
    assert download(api, "orderRow") == expected
    assert not ReportExportShard.objects.filter(export=failed).exists()
    finished = ReportExport.objects.get(pk=failed.pk)
    assert files_of(export_root, finished) == [finished.file_name]


# --- what the status says of the file ------------------------------------------------------


def test_sha256_and_expires_at_of_a_finished_export(api, worker, products, settings):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "RETENTION_DAYS": 7}
    started = api.post("/api/report/product/start?format=json&compression=gzip").json()
    assert started["sha256"] is None
    assert started["expires_at"] is None
    worker()
    body = status(api)
    stored = download(api)
    assert body["sha256"] == hashlib.sha256(stored).hexdigest()  # of the stored (gzip) file
    gzip.decompress(stored)
    finished = dt.datetime.fromisoformat(body["finished_at"])
    assert dt.datetime.fromisoformat(body["expires_at"]) == finished + dt.timedelta(days=7)
    export = ReportExport.objects.get()
    assert export.sha256 == body["sha256"]
    entry = api.get("/api/report/product/history").json()["results"][0]
    assert (entry["sha256"], entry["expires_at"]) == (body["sha256"], body["expires_at"])


def test_expires_at_is_when_cleanup_deletes_the_export(api, worker, products, settings):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "RETENTION_DAYS": 2}
    api.post("/api/report/product/start?format=csv")
    worker()
    expires = dt.datetime.fromisoformat(status(api)["expires_at"])
    export = ReportExport.objects.get()
    ReportExport.objects.filter(pk=export.pk).update(
        finished_at=export.finished_at - dt.timedelta(days=2, seconds=-60)
    )
    call_command("report_export", "cleanup", verbosity=0)
    assert ReportExport.objects.filter(pk=export.pk).exists()  # a minute before expires_at
    ReportExport.objects.filter(pk=export.pk).update(
        finished_at=export.finished_at - dt.timedelta(days=2, seconds=1)
    )
    call_command("report_export", "cleanup", verbosity=0)
    assert not ReportExport.objects.filter(pk=export.pk).exists()
    assert expires - export.finished_at == dt.timedelta(days=2)


# --- the command verb and the admin button -------------------------------------------------


def test_retry_verb_continues_the_export_and_waits(api, worker, products, small_chunks, outage):
    expected = uninterrupted(api, worker, "format=csv")
    fail_mid_export(api, worker, outage, "format=csv")
    outage.over()
    code, out, _ = run("retry", "product")
    assert code == 0, out
    assert "Starting" in out
    worker()
    assert download(api) == expected
    code, out, err = run("retry", "product")
    assert code != 0
    assert "No export is in Error" in err


def test_admin_retry_button(api, worker, products, small_chunks, outage):
    expected = uninterrupted(api, worker, "format=csv")
    failed = fail_mid_export(api, worker, outage, "format=csv")
    outage.over()
    page = f"/admin/django_report_export/reportexport/{failed.pk}/change/"
    html = api.get(page).content.decode()
    assert f"{failed.pk}/retry/" in html
    response = api.post(f"/admin/django_report_export/reportexport/{failed.pk}/retry/")
    assert response.status_code == 302
    assert ReportExport.objects.get(pk=failed.pk).status == Status.STARTING
    worker()
    assert download(api) == expected
