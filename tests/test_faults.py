"""Faults with real worker processes: a SIGKILLed worker, a pause between two workers, Redis
going away, the database dropping the connection. Each on orders (64-bit keys, JSON) and on
inquiries (UUID keys, XML). Figures measured here are quoted in docs/reliability.md."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time

import pytest
from django.core.management import call_command
from django.db import connection
from factory.random import reseed_random

from django_report_export.models import ReportExport, Status
from django_report_export.registry import site
from testproject.shop.factories import InquiryFactory
from testproject.shop.models import CustomerAccount, Inquiry

from .support.net import DatabaseProxy
from .support.workers import WorkerProcess, database_url, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

#: Rows of each service exported here.
ROWS = 1500
#: The format each service is exported in.
FORMATS = {"orderRow": "json", "inquiry": "xml"}
FAST_FAILURE = {
    "CHUNK_SIZE": 2,
    "CHECKPOINT_INTERVAL": 0,
    "HEARTBEAT_INTERVAL": 0.2,
    "STALE_AFTER": 1.5,
}


@pytest.fixture(params=list(FORMATS))
def service(request) -> str:
    return request.param


def add_inquiries(rows: int) -> None:
    reseed_random(11)
    rng = random.Random(11)
    customers = [*CustomerAccount.objects.all()[:50], None]
    made = [InquiryFactory.build(customer=rng.choice(customers)) for _ in range(rows)]
    Inquiry.objects.bulk_create(made, batch_size=500)


@pytest.fixture
def shop(api, worker, service):
    """1,500 rows of the service and the bytes of their uninterrupted export."""
    call_command("seed_shop", orders=ROWS, seed=11, verbosity=0)
    if service == "inquiry":
        add_inquiries(ROWS - Inquiry.objects.count())
    assert site.get(service).get_queryset().count() == ROWS
    start(api, service)
    worker()
    return download(api, service)


@pytest.fixture
def fast_failure(settings):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **FAST_FAILURE}


def start(api, service: str) -> None:
    response = api.post(f"/api/report/{service}/start?format={FORMATS[service]}")
    assert response.status_code == 202, response.content


def status(api, service: str):
    return api.get(f"/api/report/{service}/status").json()


def download(api, service: str) -> bytes:
    response = api.get(f"/api/report/{service}/download")
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def test_sigkilled_worker_is_continued_from_its_checkpoint(
    api, service, shop, fast_failure, tmp_path
):
    start(api, service)
    with WorkerProcess(tmp_path / "worker-1.log", **FAST_FAILURE) as first:
        wait_for(lambda: status(api, service)["processed"] >= 500)
        first.kill()
    killed_at = time.monotonic()
    at_kill = status(api, service)["processed"]
    assert status(api, service)["status"] == Status.RUNNING
    with WorkerProcess(tmp_path / "worker-2.log", **FAST_FAILURE):
        # Reading the status finds the heartbeat stale and queues a continuation.
        wait_for(lambda: status(api, service)["status"] != Status.RUNNING or None, timeout=30)
        continued_at = time.monotonic()
        wait_for(lambda: status(api, service)["status"] == Status.FINISHED, timeout=60)
    export = ReportExport.objects.get(status=Status.FINISHED, retries=1)
    assert download(api, service) == shop
    assert export.processed == ROWS
    log = (tmp_path / "worker-2.log").read_text()
    assert f"Export {export.pk} run" in log
    print(
        f"{service}: SIGKILL at {at_kill}/{ROWS} rows: continuation queued "
        f"{continued_at - killed_at:.1f} s later, file identical"
    )


def test_paused_on_one_worker_and_resumed_on_another(api, service, shop, fast_failure, tmp_path):
    start(api, service)
    with WorkerProcess(tmp_path / "worker-1.log", **FAST_FAILURE):
        wait_for(lambda: status(api, service)["processed"] >= 500)
        paused = api.post(f"/api/report/{service}/pause")
        assert paused.status_code == 200, paused.content
        assert paused.json()["status"] == Status.PAUSED
    export = ReportExport.objects.get(status=Status.PAUSED)
    assert 500 <= export.checkpoint["processed"] < ROWS
    assert status(api, service)["processed"] == export.checkpoint["processed"]
    assert api.post(f"/api/report/{service}/resume").status_code == 200
    with WorkerProcess(tmp_path / "worker-2.log", **FAST_FAILURE):
        wait_for(lambda: status(api, service)["status"] == Status.FINISHED)
    assert download(api, service) == shop
    assert f"Export {export.pk} run" in (tmp_path / "worker-2.log").read_text()
    print(f"{service}: paused at {export.checkpoint['processed']}/{ROWS} rows, file identical")


def test_worker_lost_more_than_max_retries_is_an_error(api, service, shop, settings, tmp_path):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **FAST_FAILURE, "MAX_RETRIES": 1}
    start(api, service)
    for run, rows in enumerate((300, 900)):
        with WorkerProcess(tmp_path / f"worker-{run}.log", **FAST_FAILURE, MAX_RETRIES=1) as worker:
            wait_for(lambda rows=rows: status(api, service)["processed"] >= rows)
            worker.kill()
        time.sleep(FAST_FAILURE["STALE_AFTER"] + 0.5)
    body = status(api, service)
    assert body["status"] == Status.ERROR
    assert "worker running the export was lost" in body["error"]
    assert body["file"] is None
    export = ReportExport.objects.get(status=Status.ERROR)
    assert export.retries == 1
    assert api.get(f"/api/report/{service}/download").status_code == 404


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


def endpoints(service: str) -> list[tuple[str, str]]:
    return [
        ("get", "/api/report/"),
        ("get", f"/api/report/{service}/status"),
        ("post", f"/api/report/{service}/start?format={FORMATS[service]}"),
        ("post", f"/api/report/{service}/pause"),
        ("post", f"/api/report/{service}/resume"),
        ("delete", f"/api/report/{service}/cancel"),
        ("get", f"/api/report/{service}/download"),
        ("get", f"/api/report/{service}/history"),
    ]


def test_redis_outage_pauses_the_export_and_resume_finishes_it(
    api, service, shop, fast_failure, private_redis, tmp_path
):
    start(api, service)
    export = ReportExport.objects.get(status=Status.STARTING)
    env = {"REDIS_URL": private_redis.url}
    with WorkerProcess(tmp_path / "worker-1.log", env=env, **FAST_FAILURE):
        wait_for(lambda: status(api, service)["processed"] >= 400)
        private_redis.kill()
        slowest = 0.0
        for method, url in endpoints(service):
            began = time.monotonic()
            response = getattr(api, method)(url)
            slowest = max(slowest, time.monotonic() - began)
            assert response.status_code == 503, (url, response.content)
            assert response.json()["type"] == "internalError"
        # The job stops at its next chunk boundary, its checkpoint in the database.
        wait_for(lambda: ReportExport.objects.get(pk=export.pk).status == Status.PAUSED)
    paused = ReportExport.objects.get(pk=export.pk)
    assert 400 <= paused.checkpoint["processed"] < ROWS
    assert "Redis" in paused.error

    private_redis.start()  # empty: the status is rebuilt from the database
    body = status(api, service)
    assert body["status"] == Status.PAUSED
    assert body["processed"] == paused.checkpoint["processed"]
    assert api.post(f"/api/report/{service}/resume").status_code == 200
    with WorkerProcess(tmp_path / "worker-2.log", env=env, **FAST_FAILURE):
        wait_for(lambda: status(api, service)["status"] == Status.FINISHED)
    assert download(api, service) == shop
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
def test_dropped_database_connection_is_reopened(api, service, shop, fast_failure, tmp_path):
    start(api, service)
    log = tmp_path / "worker.log"
    with WorkerProcess(log, **FAST_FAILURE):
        wait_for(lambda: status(api, service)["processed"] >= 400)
        assert terminate_other_backends() >= 1
        wait_for(lambda: status(api, service)["status"] == Status.FINISHED)
    assert download(api, service) == shop
    assert "reconnecting" in log.read_text()


def test_failing_query_mid_export_is_an_error_and_publishes_nothing(
    api, service, shop, fast_failure, tmp_path, export_root
):
    table = site.get(service).model._meta.db_table
    start(api, service)
    with WorkerProcess(tmp_path / "worker.log", **FAST_FAILURE):
        wait_for(lambda: status(api, service)["processed"] >= 400)
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
        try:
            wait_for(lambda: status(api, service)["status"] == Status.ERROR)
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")
    body = status(api, service)
    assert body["file"] is None
    assert table in body["error"]
    failed = ReportExport.objects.get(status=Status.ERROR)
    assert not failed.file_name
    # Only the checkpoint's parts stay, for a retry; a new start deletes them.
    leftovers = [p for p in export_root.rglob("*") if p.is_file() and str(failed.pk) in str(p)]
    kept = sorted(str(p.relative_to(export_root)) for p in leftovers)
    assert kept == sorted(failed.checkpoint["parts"])
    start(api, service)
    assert [p for p in export_root.rglob("*") if p.is_file() and str(failed.pk) in str(p)] == []


# --- the database away longer than the reconnect attempts -------------------------------


@pytest.mark.skipif("connection.vendor == 'sqlite'", reason="needs a database over TCP")
def test_retry_after_a_database_outage_longer_than_the_reconnects(
    api, service, shop, fast_failure, tmp_path, export_root
):
    db = connection.settings_dict
    default_port = 5432 if connection.vendor == "postgresql" else 3306
    proxy = DatabaseProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or default_port)))
    proxy.restore()
    through_proxy = database_url().replace(f":{db['PORT'] or default_port}/", f":{proxy.port}/")
    assert str(proxy.port) in through_proxy
    start(api, service)
    log = tmp_path / "worker.log"
    try:
        with WorkerProcess(log, env={"DATABASE_URL": through_proxy}, **FAST_FAILURE):
            wait_for(lambda: status(api, service)["processed"] >= 400)
            proxy.cut()
            cut_at = time.monotonic()
            # Three tries, 1 + 2 s apart, then the run fails; the database is still away.
            wait_for(lambda: status(api, service)["status"] == Status.ERROR, timeout=30)
            failed_after = time.monotonic() - cut_at
            proxy.restore()
            body = status(api, service)
            assert body["file"] is None
            assert "OperationalError" in body["error"]
            export = ReportExport.objects.get(pk=body["id"])
            assert export.checkpoint["processed"] >= 400
            retried = api.post(f"/api/report/{service}/retry")
            assert retried.status_code == 202, retried.content
            wait_for(lambda: status(api, service)["status"] == Status.FINISHED, timeout=60)
    finally:
        proxy.cut()
    assert download(api, service) == shop
    assert "reconnecting" in log.read_text()
    finished = ReportExport.objects.get(pk=export.pk)
    assert finished.status == Status.FINISHED
    assert finished.processed == ROWS
    leftovers = [p for p in export_root.rglob("*") if p.is_file() and str(export.pk) in str(p)]
    assert [str(p.relative_to(export_root)) for p in leftovers] == [finished.file_name]
    print(
        f"{service}: database away at {export.checkpoint['processed']}/{ROWS} rows, Error "
        f"{failed_after:.1f} s later; retried from the checkpoint, file identical"
    )
