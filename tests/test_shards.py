"""Sharded exports run by burst workers in this process: the assembled file is byte for byte
the file of an unsharded export, in every format and compressed; pause, resume, cancel and a
newer start act on every shard; a shard emptied after planning leaves a valid file.

End-to-end runs with several worker processes, one of them killed, are in
``test_shards_e2e.py``.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from typing import Any

import pytest
from django.core.management import call_command

from django_report_export import control
from django_report_export.control import parse_request
from django_report_export.formats import get_writer_class
from django_report_export.models import ReportExport, ReportExportShard, Status
from django_report_export.query import export_queryset
from django_report_export.registry import site
from django_report_export.runs.plan import chunk_separator, plan, shard_count
from testproject.shop.models import Order

from .support.polling import while_running
from .support.sweeps import covering

pytestmark = pytest.mark.django_db(transaction=True)

ORDERS = 120
#: 120 orders in 3 shards of 40, each read in chunks of 7 with a checkpoint after each.
SHARDED = {"SHARD_ROWS": 40, "CHUNK_SIZE": 7, "CHECKPOINT_INTERVAL": 0}
UNSHARDED = {"SHARD_ROWS": None, "CHUNK_SIZE": 7, "CHECKPOINT_INTERVAL": 0}
#: A service of the demo shop offering each format (orders are JSON and XML only).
SERVICE_OF = {"csv": "transaction", "json": "orderRow", "xml": "orderRow"}


@pytest.fixture
def shop(transactional_db: Any) -> None:
    call_command("seed_shop", orders=ORDERS, seed=7, verbosity=0)


def use(settings: Any, **values: Any) -> None:
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **values}


def export_file(api: Any, worker: Any, query: str, service: str = "orderRow") -> bytes:
    response = api.post(f"/api/report/{service}/start?{query}")
    assert response.status_code == 202, response.content
    worker()
    status = api.get(f"/api/report/{service}/status").json()
    assert status["status"] == Status.FINISHED, status
    download = api.get(f"/api/report/{service}/download")
    assert download.status_code == 200
    return b"".join(download.streaming_content)


def run_while(worker: Any, poller: Any) -> None:
    worker()
    poller.join()
    assert poller.error is None, poller.error


def shard_runs(caplog: Any) -> set[str]:
    """Shard indexes whose runs the job logged."""
    return {
        record.getMessage().split(" shard ")[1].split()[0]
        for record in caplog.records
        if " shard " in record.getMessage() and " began at row " in record.getMessage()
    }


@pytest.mark.parametrize(
    ("export_format", "compression"),
    covering((f, c) for f in ("csv", "json", "xml") for c in ("", "gzip")),
)
def test_sharded_file_is_byte_identical_to_unsharded(
    api, worker, shop, settings, caplog, export_format, compression
):
    service = SERVICE_OF[export_format]
    rows = site.get(service).get_queryset().count()
    query = f"format={export_format}&compression={compression or 'none'}"
    use(settings, **UNSHARDED)
    expected = export_file(api, worker, query, service)
    use(settings, **{**SHARDED, "SHARD_ROWS": math.ceil(rows / 3)})
    with caplog.at_level(logging.INFO, logger="django_report_export"):
        sharded = export_file(api, worker, query, service)
    assert shard_runs(caplog) == {"0", "1", "2"}
    assert sharded == expected
    if compression:
        assert gzip.decompress(sharded).count(b"\n") >= rows
    assert not ReportExportShard.objects.exists()  # forgotten once published
    status = api.get(f"/api/report/{service}/status").json()
    assert (status["processed"], status["total"], status["progress"]) == (rows, rows, 100.0)


def sharding_traits(values: Any) -> tuple[Any, ...]:
    """What a service brings to sharding: its first format, its key's type, whether its
    columns follow a relation (a join in every shard's query), and its kinds of columns."""
    service = site.get(values[0])
    crosses = any("__" in str(path) for path in service.fields)
    kinds = frozenset(type(entry).__name__ for entry in service.fields)
    return (service.formats[0], service.model._meta.pk.get_internal_type(), crosses, kinds)


@pytest.mark.parametrize(
    "service",
    covering([[s.name] for s in site if s.name != "orderRow"], traits=sharding_traits),
)
def test_every_service_sharded_is_identical(api, worker, shop, settings, service):
    query = f"format={site.get(service).formats[0]}"
    use(settings, **UNSHARDED)
    expected = export_file(api, worker, query, service)
    use(settings, **{**SHARDED, "SHARD_ROWS": 5})
    assert export_file(api, worker, query, service) == expected


def test_filters_and_field_subset_are_sharded_alike(api, worker, shop, settings):
    query = "format=json&status=paid&fields=id,number,total,customer__email"
    use(settings, **UNSHARDED)
    expected = export_file(api, worker, query)
    use(settings, **{**SHARDED, "SHARD_ROWS": 10})
    assert export_file(api, worker, query) == expected
    assert len(json.loads(expected)) == Order.objects.filter(status="paid").count()


def test_shard_count_follows_request_service_and_settings(shop, settings):
    use(settings, SHARD_ROWS=100, MAX_SHARDS=4)
    service = site.get("orderRow")
    export = ReportExport(service="orderRow", slot="orderRow", format="csv")
    assert shard_count(export, service, 100) == 1
    assert shard_count(export, service, 101) == 2
    assert shard_count(export, service, 10_000) == 4  # MAX_SHARDS
    export.shards = 3
    assert shard_count(export, service, 101) == 3
    assert shard_count(export, service, 2) == 2  # never more shards than rows
    export.shards = 1
    assert shard_count(export, service, 10_000) == 1
    use(settings, SHARD_ROWS=None)
    export.shards = None
    assert shard_count(export, service, 10**9) == 1


def test_separator_is_read_off_each_writer():
    columns = ["id", "name"]
    assert chunk_separator(get_writer_class("json")("s", columns)) == b",\n"
    assert chunk_separator(get_writer_class("csv")("s", columns)) == b""
    assert chunk_separator(get_writer_class("xml")("s", columns)) == b""


def test_shard_emptied_after_planning_leaves_a_valid_file(api, worker, shop, settings):
    use(settings, **UNSHARDED)
    api.post("/api/report/orderRow/start?format=json")
    export = ReportExport.objects.get(status=Status.STARTING)
    service = site.get("orderRow")
    queryset = export_queryset(service, export)
    writer = get_writer_class("json")("orderRow", export.fields)
    export.shards = 3
    shards = plan(export, service, queryset, writer, total=ORDERS)
    assert [(s.after_key is None, s.last_key is None) for s in shards] == [
        (True, False),
        (False, False),
        (False, True),
    ]
    middle = shards[1]
    Order.objects.filter(pk__gt=middle.after_key, pk__lte=middle.last_key).delete()
    worker()
    body = json.loads(b"".join(api.get("/api/report/orderRow/download").streaming_content))
    assert [row["id"] for row in body] == list(
        Order.objects.order_by("pk").values_list("pk", flat=True)
    )
    assert len(body) == ORDERS - (middle.last_key - middle.after_key)


def test_pause_and_resume_a_sharded_export(api, worker, shop, settings):
    use(settings, **UNSHARDED)
    expected = export_file(api, worker, "format=json")
    use(settings, **SHARDED)
    api.post("/api/report/orderRow/start?format=json")
    run_while(worker, while_running("orderRow", 50, control.pause))
    status = api.get("/api/report/orderRow/status").json()
    assert status["status"] == Status.PAUSED
    # The poller races the shards: on a loaded machine the pause may come after their last
    # row, before the file is assembled.
    assert 50 <= status["processed"] <= ORDERS
    export = ReportExport.objects.get(status=Status.PAUSED)
    shards = list(export.shard_set.all())
    assert len(shards) == 3
    assert not any(shard.run_token for shard in shards)
    assert status["processed"] == sum(shard.checkpoint.get("processed", 0) for shard in shards)
    assert api.post("/api/report/orderRow/resume").status_code == 200
    worker()
    assert api.get("/api/report/orderRow/status").json()["status"] == Status.FINISHED
    assert b"".join(api.get("/api/report/orderRow/download").streaming_content) == expected


def test_cancel_a_sharded_export_leaves_no_parts(api, worker, shop, settings, export_root):
    use(settings, **SHARDED)
    api.post("/api/report/orderRow/start?format=xml")
    run_while(worker, while_running("orderRow", 50, control.cancel))
    assert api.get("/api/report/orderRow/status").json()["status"] == Status.CANCELED
    assert not ReportExportShard.objects.exists()
    assert not [path for path in export_root.rglob("*") if path.is_file()]


def test_newer_start_cancels_a_running_sharded_export(api, worker, shop, settings):
    use(settings, **SHARDED)
    api.post("/api/report/orderRow/start?format=xml")
    json_request = parse_request(site.get("orderRow"), {"format": ["json"]})
    run_while(worker, while_running("orderRow", 50, lambda s: control.start(s, json_request)))
    worker()
    first, second = ReportExport.objects.order_by("created_at")
    assert first.status == Status.CANCELED
    assert second.status == Status.FINISHED
    assert len(
        json.loads(b"".join(api.get("/api/report/orderRow/download").streaming_content))
    ) == (ORDERS)


def test_start_shards_option_of_the_command(api, worker, shop, settings, caplog):
    use(settings, **{**UNSHARDED, "MAX_SHARDS": 8})
    with caplog.at_level(logging.INFO, logger="django_report_export"):
        call_command("report_export", "start", "orderRow", "--format=xml", "--shards=5")
        worker()
    assert shard_runs(caplog) == {"0", "1", "2", "3", "4"}
    export = ReportExport.objects.get()
    assert (export.status, export.shards, export.processed) == (Status.FINISHED, 5, ORDERS)
    request = parse_request(site.get("orderRow"), {"format": ["xml"]})
    assert request.shards is None
