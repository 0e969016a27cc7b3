"""End to end with real ``rqworker`` processes: an export paused several times, each run on
a different worker process, ends byte-identical to an uninterrupted one."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from django_report_export.models import ReportExport, Status

from .support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def status(api, service="orderRow"):
    return api.get(f"/api/report/{service}/status").json()


def file_of(api, service="orderRow") -> bytes:
    response = api.get(f"/api/report/{service}/download")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


@pytest.mark.parametrize("export_format", ["json", "xml"])
def test_pause_resume_across_worker_processes_is_byte_identical(
    api, worker, tmp_path, export_format
):
    call_command("seed_shop", orders=1500, seed=7, verbosity=0)
    assert api.post(f"/api/report/orderRow/start?format={export_format}").status_code == 202
    worker()
    uninterrupted = file_of(api)

    assert api.post(f"/api/report/orderRow/start?format={export_format}").status_code == 202
    pauses = [200, 600, 1000]
    for run, threshold in enumerate(pauses):
        with WorkerProcess(tmp_path / f"worker-{run}.log", CHUNK_SIZE=2, CHECKPOINT_INTERVAL=0):
            wait_for(lambda t=threshold: status(api)["processed"] >= t)
            paused = api.post("/api/report/orderRow/pause")
            assert paused.status_code == 200, paused.content
            body = paused.json()
            assert body["status"] == Status.PAUSED
            assert threshold <= body["processed"] < 1500
        assert status(api)["status"] == Status.PAUSED
        assert api.post("/api/report/orderRow/resume").status_code == 200

    with WorkerProcess(tmp_path / "worker-last.log", CHUNK_SIZE=2, CHECKPOINT_INTERVAL=0):
        wait_for(lambda: status(api)["status"] == Status.FINISHED)
    assert file_of(api) == uninterrupted
    export = ReportExport.objects.order_by("-created_at").first()
    assert export.processed == 1500
    assert export.checkpoint == {}


def test_cancel_on_a_worker_process_discards_the_output(api, tmp_path, export_root):
    call_command("seed_shop", orders=1500, seed=7, verbosity=0)
    api.post("/api/report/orderRow/start?format=json")
    with WorkerProcess(tmp_path / "worker.log", CHUNK_SIZE=2, CHECKPOINT_INTERVAL=0):
        wait_for(lambda: status(api)["processed"] >= 300)
        response = api.delete("/api/report/orderRow/cancel")
        assert response.status_code == 200
        assert response.json()["status"] == Status.CANCELED
    assert status(api)["status"] == Status.CANCELED
    assert [p for p in export_root.rglob("*") if p.is_file()] == []


def test_start_while_running_on_a_worker_process(api, tmp_path, export_root):
    call_command("seed_shop", orders=1500, seed=7, verbosity=0)
    first = api.post("/api/report/orderRow/start?format=json").json()["id"]
    with WorkerProcess(tmp_path / "worker.log", CHUNK_SIZE=2, CHECKPOINT_INTERVAL=0):
        wait_for(lambda: status(api)["processed"] >= 300)
        second = api.post("/api/report/orderRow/start?format=xml")
        assert second.status_code == 202
        assert ReportExport.objects.get(pk=first).status == Status.CANCELED
        wait_for(lambda: status(api)["status"] == Status.FINISHED)
    assert status(api)["id"] == second.json()["id"]
    files = [p for p in export_root.rglob("*") if p.is_file()]
    assert len(files) == 1
    assert files[0].suffix == ".xml"
