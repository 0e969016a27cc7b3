"""Faults with real worker processes: a SIGKILLed worker, Redis going away, the database
dropping the connection. Figures measured here are quoted in docs/reliability.md."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
from django.core.management import call_command
from django.db import connection

from django_report_export.models import ReportExport, Status

from .workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ORDERS = 1500
FAST_FAILURE = {
    "CHUNK_SIZE": 2,
    "CHECKPOINT_INTERVAL": 0,
    "HEARTBEAT_INTERVAL": 0.2,
    "STALE_AFTER": 1.5,
}


@pytest.fixture
def shop(api, worker):
    """1,500 orders and the bytes of their uninterrupted JSON export."""
    call_command("seed_shop", orders=ORDERS, seed=11, verbosity=0)
    api.post("/api/report/order/start?format=json")
    worker()
    return download(api)


@pytest.fixture
def fast_failure(settings):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **FAST_FAILURE}


def status(api):
    return api.get("/api/report/order/status").json()


def download(api) -> bytes:
    response = api.get("/api/report/order/download")
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def test_sigkilled_worker_is_continued_from_its_checkpoint(api, shop, fast_failure, tmp_path):
    api.post("/api/report/order/start?format=json")
    first = WorkerProcess(tmp_path / "worker-1.log", **FAST_FAILURE)
    wait_for(lambda: status(api)["processed"] >= 500)
    first.kill()
    killed_at = time.monotonic()
    at_kill = status(api)["processed"]
    assert status(api)["status"] == Status.RUNNING
    with WorkerProcess(tmp_path / "worker-2.log", **FAST_FAILURE):
        # Reading the status finds the heartbeat stale and queues a continuation.
        wait_for(lambda: status(api)["status"] != Status.RUNNING or None, timeout=30)
        continued_at = time.monotonic()
        wait_for(lambda: status(api)["status"] == Status.FINISHED, timeout=60)
    export = ReportExport.objects.get(status=Status.FINISHED, retries=1)
    assert download(api) == shop
    assert export.processed == ORDERS
    log = (tmp_path / "worker-2.log").read_text()
    assert f"Export {export.pk} run" in log
    print(
        f"SIGKILL at {at_kill}/{ORDERS} rows: continuation queued "
        f"{continued_at - killed_at:.1f} s later, file identical"
    )


def test_worker_lost_more_than_max_retries_is_an_error(api, shop, settings, tmp_path):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **FAST_FAILURE, "MAX_RETRIES": 1}
    api.post("/api/report/order/start?format=json")
    for run, rows in enumerate((300, 900)):
        worker = WorkerProcess(tmp_path / f"worker-{run}.log", **FAST_FAILURE, MAX_RETRIES=1)
        wait_for(lambda rows=rows: status(api)["processed"] >= rows)
        worker.kill()
        time.sleep(FAST_FAILURE["STALE_AFTER"] + 0.5)
    body = status(api)
    assert body["status"] == Status.ERROR
    assert "worker running the export was lost" in body["error"]
    assert body["file"] is None
    export = ReportExport.objects.get(status=Status.ERROR)
    assert export.retries == 1
    assert api.get("/api/report/order/download").status_code == 404


# --- Redis going away --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A private redis-server that a test may kill and start again on the same port."""

    def __init__(self, directory) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self.answers, timeout=10)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def private_redis(settings, tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "default": {"URL": server.url}}
    yield server
    if server.process and server.process.poll() is None:
        server.kill()


ENDPOINTS = [
    ("get", "/api/report/"),
    ("get", "/api/report/order/status"),
    ("post", "/api/report/order/start?format=json"),
    ("post", "/api/report/order/pause"),
    ("post", "/api/report/order/resume"),
    ("delete", "/api/report/order/cancel"),
    ("get", "/api/report/order/download"),
    ("get", "/api/report/order/history"),
]


def test_redis_outage_pauses_the_export_and_resume_finishes_it(
    api, shop, fast_failure, private_redis, tmp_path
):
    api.post("/api/report/order/start?format=json")
    export = ReportExport.objects.get(status=Status.STARTING)
    env = {"REDIS_URL": private_redis.url}
    with WorkerProcess(tmp_path / "worker-1.log", env=env, **FAST_FAILURE):
        wait_for(lambda: status(api)["processed"] >= 400)
        private_redis.kill()
        slowest = 0.0
        for method, url in ENDPOINTS:
            began = time.monotonic()
            response = getattr(api, method)(url)
            slowest = max(slowest, time.monotonic() - began)
            assert response.status_code == 503, (url, response.content)
            assert response.json()["type"] == "internalError"
        # The job stops at its next chunk boundary, its checkpoint in the database.
        wait_for(lambda: ReportExport.objects.get(pk=export.pk).status == Status.PAUSED)
    paused = ReportExport.objects.get(pk=export.pk)
    assert 400 <= paused.checkpoint["processed"] < ORDERS
    assert "Redis" in paused.error

    private_redis.start()  # empty: the status is rebuilt from the database
    body = status(api)
    assert body["status"] == Status.PAUSED
    assert body["processed"] == paused.checkpoint["processed"]
    assert api.post("/api/report/order/resume").status_code == 200
    with WorkerProcess(tmp_path / "worker-2.log", env=env, **FAST_FAILURE):
        wait_for(lambda: status(api)["status"] == Status.FINISHED)
    assert download(api) == shop
    print(f"Redis down: 8 endpoints answered 503 internalError, slowest in {slowest:.2f} s")


# --- the database dropping the connection ------------------------------------------------


def terminate_other_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="needs PostgreSQL connections")
def test_dropped_database_connection_is_reopened(api, shop, fast_failure, tmp_path):
    api.post("/api/report/order/start?format=json")
    log = tmp_path / "worker.log"
    with WorkerProcess(log, **FAST_FAILURE):
        wait_for(lambda: status(api)["processed"] >= 400)
        assert terminate_other_backends() >= 1
        wait_for(lambda: status(api)["status"] == Status.FINISHED)
    assert download(api) == shop
    assert "reconnecting" in log.read_text()


def test_failing_query_mid_export_is_an_error_and_publishes_nothing(
    api, shop, fast_failure, tmp_path, media_root
):
    api.post("/api/report/order/start?format=json")
    with WorkerProcess(tmp_path / "worker.log", **FAST_FAILURE):
        wait_for(lambda: status(api)["processed"] >= 400)
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE shop_order RENAME TO shop_order_away")
        try:
            wait_for(lambda: status(api)["status"] == Status.ERROR)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("ALTER TABLE shop_order_away RENAME TO shop_order")
    body = status(api)
    assert body["file"] is None
    assert "shop_order" in body["error"]
    failed = ReportExport.objects.get(status=Status.ERROR)
    assert not failed.file_name
    leftovers = [p for p in media_root.rglob("*") if p.is_file() and str(failed.pk) in str(p)]
    assert leftovers == []
