"""Publishing the file: only the run that owns the export publishes and announces it, a run
that lost the export never deletes another run's file, a file appears under its final name
complete or not at all, and an export that does not finish leaves no file behind."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.db import connections

from django_report_export import signals, storage
from django_report_export.models import ReportExport
from django_report_export.runs import single as job_module
from django_report_export.runs.base import Superseded
from django_report_export.runs.single import ExportRun
from django_report_export.status import Status
from django_report_export.storage import Part, Published, export_folder, get_storage, publish
from testproject.shop.factories import ProductFactory

from .support.burst import run_worker

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 40


@pytest.fixture
def products(settings: Any) -> None:
    ProductFactory.create_batch(ROWS)
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 5}


@pytest.fixture
def sent() -> Iterator[list[str]]:
    """The names of the export signals sent, in order."""
    names: list[str] = []

    def recorder(name: str) -> Any:
        return lambda **kwargs: names.append(name)

    receivers = {
        name: recorder(name) for name in ("export_finished", "export_failed", "export_canceled")
    }
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver, weak=False)
    yield names
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


def finished(api: Any, worker: Any) -> tuple[ReportExport, bytes]:
    assert api.post("/api/report/product/start?format=csv").status_code == 202
    worker()
    export = ReportExport.objects.get()
    assert export.status == Status.FINISHED
    return export, download(api, export)


def download(api: Any, export: ReportExport) -> bytes:
    response = api.get(f"/api/report/product/download?id={export.pk}")
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def files_of(export: ReportExport) -> list[str]:
    """Every file in the export's folder, its subfolders' included."""
    root = get_storage().path(export_folder(export))
    return sorted(
        os.path.relpath(os.path.join(folder, name), get_storage().path(""))
        for folder, _, names in os.walk(root)
        for name in names
    )


def stale_run(export: ReportExport, data: bytes) -> ExportRun:
    """A run of ``export`` that no longer owns it (its worker stalled past ``STALE_AFTER`` and
    another run took over), with ``data`` written."""
    run = ExportRun(ReportExport.objects.get(pk=export.pk))
    run.parts.write(data)
    run.processed = 1
    return run


# --- a run that lost the export --------------------------------------------------------------


def test_a_run_that_lost_the_export_publishes_nothing_and_deletes_nothing(
    api, products, worker, sent
):
    export, published = finished(api, worker)
    files = files_of(export)
    stale = stale_run(export, b"id\n1\n")
    with pytest.raises(Superseded):
        stale.finish()
    stale.parts.discard_unsaved()  # as ExportRun.execute does on Superseded
    export.refresh_from_db()
    assert export.status == Status.FINISHED
    assert download(api, export) == published
    assert files_of(export) == files
    assert sent == ["export_finished"]


def test_losing_the_export_during_the_publish_keeps_the_file_of_the_run_that_took_it(
    api, products, worker, sent, monkeypatch
):
    """The run's publish ends after another run took the export over and published: the
    other run's file is the one recorded, and it stays."""
    taken_over: list[bytes] = []
    real_publish = job_module.publish

    def publish_then_lose_the_export(*args: Any, **kwargs: Any) -> Published:
        stored = real_publish(*args, **kwargs)
        if not taken_over:
            taken_over.append(b"id,sku\n0,TAKEN-OVER\n")
            export = ReportExport.objects.get()
            other = ExportRun(export)
            ReportExport.objects.filter(pk=export.pk).update(run_token=other.token)
            other.parts.write(taken_over[0])
            other.processed = 1
            other.finish()
        return stored

    monkeypatch.setattr(job_module, "publish", publish_then_lose_the_export)
    assert api.post("/api/report/product/start?format=csv").status_code == 202
    worker()
    export = ReportExport.objects.get()
    assert export.status == Status.FINISHED
    assert export.processed == 1
    assert download(api, export) == taken_over[0]
    assert files_of(export) == [export.file_name]
    assert sent == ["export_finished"]


def test_a_run_that_lost_the_export_sends_no_signal_and_leaves_its_state(
    api, products, worker, sent
):
    export, published = finished(api, worker)
    stale = stale_run(export, b"id\n1\n")
    stale.fail(RuntimeError("the worker's database connection broke"))
    with pytest.raises(Superseded):
        stale_run(export, b"id\n1\n").cancel()
    export.refresh_from_db()
    assert (export.status, export.error) == (Status.FINISHED, "")
    assert download(api, export) == published
    body = api.get("/api/report/product/status").json()
    assert body["status"] == Status.FINISHED
    assert sent == ["export_finished"]


# --- a publish that was killed ---------------------------------------------------------------


def killed_while_publishing(action: Any, monkeypatch: Any) -> None:
    """Run ``action`` in a child process whose publish stops after its first block has been
    written, and SIGKILL the child there."""
    ready_read, ready_write = os.pipe()
    real_read_pieces = storage._read_pieces
    real_copy_range = storage._copy_range

    def stop_here() -> None:
        os.write(ready_write, b"!")
        time.sleep(60)

    def first_block_then_stop(*args: Any) -> Iterator[bytes]:
        blocks = real_read_pieces(*args)
        yield next(blocks)
        stop_here()
        yield from blocks

    def some_bytes_then_stop(source: Any, target: Any, size: int | None) -> int:
        copied = real_copy_range(source, target, 10)
        stop_here()
        return copied

    for connection in connections.all():
        connection.close()  # the child opens its own
    child = os.fork()
    if child == 0:
        try:
            monkeypatch.setattr(storage, "_read_pieces", first_block_then_stop)
            monkeypatch.setattr(storage, "_copy_range", some_bytes_then_stop)
            action()
        finally:
            os._exit(1)
    try:
        assert os.read(ready_read, 1) == b"!", "the child never reached its publish"
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(ready_read)
        os.close(ready_write)


def published_files(export: ReportExport) -> list[str]:
    """The files of ``export`` under a name a file is published as."""
    name = f"{export.service}-{export.created_at:%Y%m%d-%H%M%S}.csv"
    return [file for file in files_of(export) if file.endswith((f"/{name}", f"/{name}.gz"))]


def test_a_worker_killed_mid_publish_leaves_no_file_under_the_final_name_nor_anything_after(
    api, products, settings, monkeypatch
):
    settings.REPORT_EXPORT = {
        **settings.REPORT_EXPORT,
        "STALE_AFTER": 1,
        "HEARTBEAT_INTERVAL": 0.2,
        "MAX_RETRIES": 0,
    }
    assert api.post("/api/report/product/start?format=csv&compression=gzip").status_code == 202
    killed_while_publishing(run_worker, monkeypatch)
    export = ReportExport.objects.get()
    assert published_files(export) == []
    time.sleep(1.5)  # the run's heartbeat goes stale
    body = api.get("/api/report/product/status").json()
    assert body["status"] == Status.ERROR, body
    assert "worker running the export was lost" in body["error"]
    # What stays is the checkpoint's parts, for a retry; a new start deletes them.
    export.refresh_from_db()
    assert files_of(export) == sorted(export.checkpoint.get("parts", []))
    assert api.post("/api/report/product/start?format=csv").status_code == 202
    assert files_of(export) == []


def test_a_publish_killed_mid_copy_leaves_no_file_under_its_name(tmp_path, monkeypatch):
    store = FileSystemStorage(location=tmp_path)
    store.save("a.part", ContentFile(b"id,sku\n1,A\n"))
    store.save("b.part", ContentFile(b"2,B\n"))
    pieces = [Part("a.part"), Part("b.part")]
    killed_while_publishing(lambda: publish(store, pieces, "run/out.csv", ""), monkeypatch)
    assert not store.exists("run/out.csv")
    digest = hashlib.sha256(b"id,sku\n1,A\n2,B\n").hexdigest()
    assert publish(store, pieces, "run/out.csv", "") == ("run/out.csv", 15, digest)
    assert store.open("run/out.csv").read() == b"id,sku\n1,A\n2,B\n"
