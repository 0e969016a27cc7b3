"""Sharded exports across real ``rqworker`` processes, as on several hosts: shards exported in
parallel, one worker SIGKILLed mid-shard (the export's own job, or a helper's), and the file
still identical to a one-worker export. Figures are quoted in docs/deployment.md.

In the ``hosts`` case every worker has a media and temporary folder of its own and the export
lives in object storage (moto's S3 server): no worker can read another's local files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django_rq import get_queue
from rq import Worker

from django_report_export.connection import get_redis
from django_report_export.models import ReportExport, Status
from django_report_export.runs.leases import RUN_PREFIX, shards_key

from .support.s3server import host
from .support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ORDERS = 1500
#: Three shards of 500 orders, read a row at a time (so a shard lasts long enough to be caught
#: mid-way), each worker lost after 1.5 s of silence.
SHARDED = {
    "SHARD_ROWS": 500,
    "CHUNK_SIZE": 1,
    "CHECKPOINT_INTERVAL": 0.2,
    "HEARTBEAT_INTERVAL": 0.2,
    "STALE_AFTER": 1.5,
}


@pytest.fixture
def expected(api: Any, worker: Any) -> bytes:
    """1,500 orders and the bytes of their one-worker, unsharded XML export."""
    call_command("seed_shop", orders=ORDERS, seed=5, verbosity=0)
    assert api.post("/api/report/orderRow/start?format=xml").status_code == 202
    worker()
    return download(api)


def status(api: Any) -> dict[str, Any]:
    return api.get("/api/report/orderRow/status").json()


def download(api: Any) -> bytes:
    response = api.get("/api/report/orderRow/download")
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def running_shards(export: ReportExport) -> list[str]:
    states = get_redis().hgetall(shards_key(export.pk))
    return [
        value.decode()
        for name, value in states.items()
        if name.decode().isdigit() and value.decode().startswith(RUN_PREFIX)
    ]


def busy(name: str) -> bool:
    """Whether the RQ worker ``name`` is running a job right now."""
    return any(
        worker.name == name and worker.get_current_job_id()
        for worker in Worker.all(queue=get_queue())
    )


def owns_export(log: Path, export: ReportExport) -> bool:
    """Whether the worker writing ``log`` runs the export's own job (the coordinator)."""
    return f"Export {export.pk} run " in log.read_text()


@pytest.mark.parametrize("victim", ["helper", "coordinator"])
@pytest.mark.parametrize("placement", ["shared-disk", "hosts"])
def test_worker_killed_mid_shard_and_the_export_still_finishes_identical(
    api, expected, settings, tmp_path, request, placement, victim
):
    env: list[dict[str, str]] = [{}, {}, {}]
    if placement == "hosts":
        s3_env = request.getfixturevalue("exports_storage")
        env = [host(tmp_path, f"host-{i}", s3_env) for i in range(3)]
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **SHARDED}
    logs = [tmp_path / f"worker-{i}.log" for i in range(3)]
    workers = [WorkerProcess(logs[i], env=env[i], **SHARDED) for i in range(2)]
    try:
        # Both workers listen before the export is queued: a worker still starting could
        # find every shard already done by the other.
        wait_for(lambda: len(Worker.all(queue=get_queue())) == 2, timeout=60)
        assert api.post("/api/report/orderRow/start?format=xml").status_code == 202
        export = ReportExport.objects.get(status=Status.STARTING)
        # Both workers export a shard at once.
        wait_for(lambda: len(running_shards(export)) == 2, timeout=60)
        wait_for(lambda: status(api)["processed"] >= 100, timeout=60)
        coordinator = 0 if owns_export(logs[0], export) else 1
        killed = coordinator if victim == "coordinator" else 1 - coordinator
        # Caught mid-job: a helper that had already finished its one shard, while the
        # coordinator took the third, would be killed with nothing to lose.
        assert busy(logs[killed].stem), "the victim had no job left to lose"
        at_kill = status(api)["processed"]
        workers[killed].kill()
        killed_at = time.monotonic()
        workers.append(WorkerProcess(logs[2], env=env[2], **SHARDED))
        # Status reads find a lost coordinator; the coordinator finds a lost helper.
        wait_for(lambda: status(api)["status"] == Status.FINISHED, timeout=120, interval=0.2)
        finished_at = time.monotonic()
    finally:
        for worker in workers:
            worker.stop()
    export.refresh_from_db()
    assert download(api) == expected
    assert export.processed == ORDERS
    survivors = "".join(log.read_text() for i, log in enumerate(logs) if i != killed)
    if victim == "coordinator":
        assert export.retries == 1
    else:
        assert export.retries == 0
        assert "lost; continuing it from row" in survivors
    print(
        f"{placement}, {victim} SIGKILLed at {at_kill}/{ORDERS} rows: finished "
        f"{finished_at - killed_at:.1f} s later, file identical"
    )
