"""Jobs queued by the previous release, under its function paths, still run: a real Redis
and a burst RQ worker in this process."""

from __future__ import annotations

import csv
import io

import pytest
from rq import Callback
from rq.utils import import_attribute

from django_report_export import maintenance, queueing
from django_report_export.conf import export_settings
from django_report_export.connection import get_queue
from django_report_export.models import ReportExport, Status
from django_report_export.runs import sharded, single
from testproject.shop.factories import ProductFactory
from testproject.shop.models import Product

pytestmark = pytest.mark.django_db(transaction=True)

#: The paths the previous release queued its jobs and failure callback under.
OLD_JOB_PATH = "django_report_export.job.run_export"
OLD_SHARD_JOB_PATH = "django_report_export.sharded.run_export_shard"
OLD_JOB_FAILED_PATH = "django_report_export.recovery.job_failed"


def test_an_export_job_queued_under_the_old_path_still_runs(api, worker):
    ProductFactory.create_batch(7)
    started = api.post("/api/report/product/start?format=csv&fields=id,sku")
    assert started.status_code == 202
    queue = get_queue()
    # The job as the previous release queued it, in place of the one the start queued.
    assert queue.count == 1
    queue.empty()
    export = ReportExport.objects.get(pk=started.json()["id"])
    queue.enqueue_call(
        OLD_JOB_PATH,
        args=(str(export.pk),),
        timeout=export_settings.JOB_TIMEOUT,
        on_failure=Callback(OLD_JOB_FAILED_PATH),
    )
    worker()
    body = api.get("/api/report/product/status").json()
    assert body["status"] == Status.FINISHED
    assert body["processed"] == 7
    response = api.get("/api/report/product/download")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["id", "sku"]
    expected = [
        [str(pk), sku] for pk, sku in Product.objects.order_by("pk").values_list("pk", "sku")
    ]
    assert rows[1:] == expected


def test_old_paths_name_the_functions_new_jobs_are_queued_under():
    assert import_attribute(OLD_JOB_PATH) is import_attribute(queueing.JOB_PATH)
    assert import_attribute(queueing.JOB_PATH) is single.run_export
    assert import_attribute(OLD_SHARD_JOB_PATH) is import_attribute(queueing.SHARD_JOB_PATH)
    assert import_attribute(queueing.SHARD_JOB_PATH) is sharded.run_export_shard
    assert import_attribute(OLD_JOB_FAILED_PATH) is import_attribute(queueing.JOB_FAILED_PATH)
    assert import_attribute(queueing.JOB_FAILED_PATH) is maintenance.job_failed
