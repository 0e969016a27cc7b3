"""Exports read from a real PostgreSQL streaming replica (``DATABASE_ALIAS = "replica"``).

The test set-up runs its own primary and hot standby (``tests/support/pgreplica.py``). The demo shop
is migrated and seeded on the primary by ``manage.py``; a gunicorn API server and real
``rqworker`` processes run with ``DATABASE_URL`` = the primary (``ReportExport`` records, users)
and ``REPLICA_DATABASE_URL`` = the standby, ``REPORT_EXPORT["DATABASE_ALIAS"] = "replica"``.
The test talks to them over HTTP and to both clusters with psycopg: this suite's own Django
database plays no part, so only the PostgreSQL suite runs them (the SQLite and MariaDB suites
would run the same clusters again).

What users see is documented in docs/deployment.md ("Read replica").
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection

from django_report_export.models import Status

from .support.net import port_is_free
from .support.pgreplica import ReplicaPair, ReplicaUnavailable
from .support.servers import LiveServer, Process
from .support.workers import ROOT, WorkerProcess, descendants, wait_for, worker_env

pytestmark = [pytest.mark.slow]

ORDERS = 400
LAGGED_ORDERS = 25
SHOP_DB = "shop"
#: Ports of the API server (127.0.0.1 only).
HTTP_PORTS = range(8300, 8400)
#: Replay waits at most 1 s for a standby query that conflicts with it, then cancels it (before
#: either side's deadlock check, after ``deadlock_timeout``, would cancel it for a deadlock).
STANDBY_CONF = "max_standby_streaming_delay = 1s\ndeadlock_timeout = 10s\n"


def unavailable(reason: str) -> None:
    """Skip, unless this is CI (``CI=true``), where a missing replica is a failure."""
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"CI=true, and the replica tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_pair() -> Iterator[ReplicaPair]:
    """A private primary and streaming hot standby, for the whole session."""
    if connection.vendor != "postgresql":
        pytest.skip("the PostgreSQL suite runs the replica tests (their clusters are their own)")
    try:
        pair = ReplicaPair(standby_conf=STANDBY_CONF)
    except ReplicaUnavailable as exc:
        unavailable(str(exc))
    with pair:
        print(f"primary :{pair.primary.port}, standby :{pair.standby.port}, "
              f"up in {pair.startup_seconds:.1f} s")  # fmt: skip
        yield pair


# --- the demo shop on the private primary --------------------------------------------------


class ApiServer(LiveServer):
    """gunicorn (two workers) on a free port of ``HTTP_PORTS``, with the environment ``env``."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        ports = [port for port in HTTP_PORTS if port_is_free(port)]
        random.shuffle(ports)
        for port in ports[:5]:
            Process.__init__(
                self,
                [sys.executable, "-m", "gunicorn", "testproject.wsgi:application",
                 "--bind", f"127.0.0.1:{port}", "--workers", "2", "--timeout", "60",
                 "--graceful-timeout", "5"],
                log,
                env,
            )  # fmt: skip
            self.port, self.url = port, f"http://127.0.0.1:{port}"
            if self.wait_ready():
                return
            self.stop()
        raise RuntimeError(f"gunicorn did not start on {HTTP_PORTS}: {self.output()[-2000:]}")


class PrivateShop:
    """The demo shop's processes on the private pair, and an HTTP client of its API."""

    def __init__(self, pair: ReplicaPair, folder: Path) -> None:
        self.pair = pair
        self.folder = folder
        self.media = folder / "media"
        self.http = requests.Session()
        self.http.auth = ("admin", "admin")  # seed_shop's superuser
        self.server: LiveServer | None = None
        self.base_url = ""

    def env(self, **report_export: Any) -> dict[str, str]:
        env = worker_env(DATABASE_ALIAS="replica", **report_export)
        env.update(
            DJANGO_SETTINGS_MODULE="tests.live_settings",  # cheap password hashing
            DJANGO_DEBUG="0",
            DATABASE_URL=self.pair.primary.url(SHOP_DB),
            REPLICA_DATABASE_URL=self.pair.standby.url(SHOP_DB),
            MEDIA_ROOT=str(self.media),
            # The shop's own export folder: its workers outlive a test's ``export_root``.
            EXPORT_STORAGE_DIR=str(self.folder / "exports"),
        )
        return env

    def manage(self, *args: str) -> None:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, f"manage.py {args} failed:\n{done.stdout}{done.stderr}"

    def start_server(self) -> None:
        self.server = ApiServer(self.folder / "gunicorn.log", self.env())
        self.base_url = self.server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def worker(self, name: str, **report_export: Any) -> WorkerProcess:
        return WorkerProcess(self.folder / f"{name}.log", env=self.env(**report_export))

    # --- the API -------------------------------------------------------------------------

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, f"{self.base_url}/api/report/{path}", timeout=30, **kwargs)

    def status(self, service: str = "orderRow") -> dict[str, Any]:
        response = self.call("get", f"{service}/status")
        assert response.status_code == 200, response.text
        return response.json()

    def start(self, service: str = "orderRow", export_format: str = "json") -> dict[str, Any]:
        response = self.call("post", f"{service}/start", params={"format": export_format})
        assert response.status_code == 202, response.text
        return response.json()

    def wait_finished(self, service: str = "orderRow", timeout: float = 60) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            body = self.status(service)
            assert body["status"] != Status.ERROR, body["error"]
            return body if body["status"] == Status.FINISHED else None

        return wait_for(ended, timeout=timeout, interval=0.05)

    def download(self, service: str = "orderRow") -> bytes:
        response = self.call("get", f"{service}/download")
        assert response.status_code == 200, response.text
        return response.content

    def export(self, service: str = "orderRow", export_format: str = "json") -> tuple[dict, bytes]:
        """Start an export, wait until it is Finished; its status body and file."""
        self.start(service, export_format)
        body = self.wait_finished(service)
        return body, self.download(service)

    # --- straight to the clusters ----------------------------------------------------------

    def order_ids(self, cluster: Any) -> list[int]:
        with cluster.connect(SHOP_DB) as conn:
            return [row[0] for row in conn.execute("SELECT id FROM shop_order ORDER BY id")]

    def insert_orders(self, count: int) -> list[int]:
        """``count`` new orders on the primary (copies of old ones with new numbers)."""
        with self.pair.primary.connect(SHOP_DB) as conn:
            columns = [
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'shop_order' AND column_name NOT IN ('id', 'number') "
                    "ORDER BY ordinal_position"
                )
            ]
            names = ", ".join(columns)
            rows = conn.execute(
                f"INSERT INTO shop_order (number, {names}) "
                f"SELECT 'LAG-' || id, {names} FROM shop_order ORDER BY id LIMIT %s "
                "RETURNING id",
                (count,),
            ).fetchall()
        return sorted(row[0] for row in rows)


@pytest.fixture(scope="module")
def shop(pg_pair: ReplicaPair, tmp_path_factory: Any) -> Iterator[PrivateShop]:
    """The demo shop migrated and seeded on the private primary, and its API server."""
    began = time.monotonic()
    shop = PrivateShop(pg_pair, tmp_path_factory.mktemp("replica-shop"))
    pg_pair.create_database(SHOP_DB)
    shop.manage("migrate", "--no-input", "--verbosity", "0")
    shop.manage("seed_shop", "--orders", str(ORDERS), "--seed", "5", "--verbosity", "0")
    shop.start_server()
    pg_pair.wait_replayed()
    print(f"private shop ready in {time.monotonic() - began:.1f} s")
    yield shop
    shop.stop()


def order_ids(data: bytes) -> list[int]:
    return [row["id"] for row in json.loads(data)]


# --- the tests -----------------------------------------------------------------------------


def test_export_reads_the_replica_at_its_replay_point(shop, pg_pair):
    pair = pg_pair
    seeded = shop.order_ids(pair.primary)
    assert shop.order_ids(pair.standby) == seeded
    with shop.worker("worker-lag"):
        pair.pause_replay()
        try:
            added = shop.insert_orders(LAGGED_ORDERS)
            assert shop.order_ids(pair.primary) == sorted(seeded + added)
            assert shop.order_ids(pair.standby) == seeded  # the standby lags

            body, data = shop.export()
            # The file is the replica's state: no lagged order, and the count agrees.
            assert order_ids(data) == seeded
            assert body["total"] == body["processed"] == len(seeded)
            assert body["progress"] == 100
        finally:
            pair.resume_replay()
        pair.wait_replayed()
        assert shop.order_ids(pair.standby) == sorted(seeded + added)

        body, data = shop.export()
    assert order_ids(data) == sorted(seeded + added)
    assert body["total"] == body["processed"] == len(seeded) + LAGGED_ORDERS


def test_csv_fast_path_reads_the_standby(shop, pg_pair):
    """The PostgreSQL reader's COPY runs in a REPEATABLE READ, READ ONLY transaction, which a
    hot standby accepts; the file is that of the ORM reader."""
    with pg_pair.standby.connect(SHOP_DB) as conn:
        customers = conn.execute("SELECT count(*) FROM shop_customeraccount").fetchone()[0]
    with shop.worker("worker-fast"):
        body, fast = shop.export("customerAccount", "csv")
    with shop.worker("worker-orm", FAST_PATH=False):
        _, orm = shop.export("customerAccount", "csv")
    assert fast == orm
    assert body["total"] == body["processed"] == customers
    assert len(list(csv.reader(io.StringIO(fast.decode())))) == customers + 1  # and the header


def standby_backends_waiting_for_a_lock(pair: ReplicaPair) -> int:
    return pair.standby.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
        "AND wait_event_type = 'Lock' AND backend_type = 'client backend'",
        SHOP_DB,
    )


def startup_holds(pair: ReplicaPair, table: str) -> bool:
    """Whether the standby's replay holds the ACCESS EXCLUSIVE lock a primary took on ``table``
    (the lock record has reached and been replayed on the standby)."""
    return bool(
        pair.standby.query(
            "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass "
            "AND mode = 'AccessExclusiveLock' AND granted",
            table,
            dbname=SHOP_DB,
        )
    )


def conflict_with_replay(shop: PrivateShop, released_when: Any) -> None:
    """Make the replay cancel the export's chunk query on the standby, then release it.

    The primary locks the customers (a transaction left open): the standby's replay takes the
    same lock, so the export's next chunk query, which locks the orders and then the customers
    it joins, waits, holding its lock on the orders. The primary then locks the orders: the
    replay waits for the chunk query, which waits for the replay, and after
    ``max_standby_streaming_delay`` the standby cancels the query:
    "canceling statement due to conflict with recovery". Once ``released_when()`` is true
    (the worker logged its retry), both transactions end and the retry goes through.
    """
    pair = shop.pair
    with (
        pair.primary.connect(SHOP_DB, autocommit=False) as customers_lock,
        pair.primary.connect(SHOP_DB, autocommit=False) as orders_lock,
    ):
        customers_lock.execute("LOCK TABLE shop_customeraccount IN ACCESS EXCLUSIVE MODE")
        pair.wait_replayed()
        wait_for(lambda: startup_holds(pair, "shop_customeraccount"), timeout=10)
        shop.start("orderRow", "json")
        wait_for(lambda: standby_backends_waiting_for_a_lock(pair), timeout=20)
        orders_lock.execute("LOCK TABLE shop_order IN ACCESS EXCLUSIVE MODE")
        pair.flush_wal()
        wait_for(released_when, timeout=20)
        customers_lock.rollback()
        orders_lock.rollback()


def test_chunk_query_canceled_by_replay_conflict_is_retried(shop, pg_pair):
    """A chunk read canceled by the standby (a replay conflict) is an ``OperationalError``:
    the job reconnects and reads the chunk again; the file is complete and exact."""
    with shop.worker("worker-conflict-1", FAST_PATH=False):
        _, uninterrupted = shop.export()
    log = shop.folder / "worker-conflict-2.log"
    with shop.worker(log.stem, FAST_PATH=False):
        conflict_with_replay(shop, lambda: "reconnecting" in log.read_text())
        body = shop.wait_finished()
    assert shop.download() == uninterrupted
    assert body["processed"] == body["total"] == len(order_ids(uninterrupted))
    text = log.read_text()
    assert "conflict with recovery" in text
    assert "reconnecting, attempt 2 of 3" in text


class ExportFailed(AssertionError):
    """The export ended in Error (what the engine does today; the xfail below expects it)."""


def test_replay_conflict_at_the_start_of_a_run_is_retried(shop, pg_pair):
    """With the fast path, the first query of a run on the standby is the PostgreSQL reader's
    probe of the result's column types; a replay conflict there must be retried too."""
    with shop.worker("worker-probe-1"):
        _, uninterrupted = shop.export()
    log = shop.folder / "worker-probe-2.log"
    with shop.worker(log.stem):
        conflict_with_replay(
            shop,
            lambda: "reconnecting" in log.read_text() or shop.status()["status"] == Status.ERROR,
        )
        body = wait_for(
            lambda: (b := shop.status())["status"] in (Status.FINISHED, Status.ERROR) and b,
            timeout=30,
        )
    if body["status"] == Status.ERROR:
        assert "conflict with recovery" in body["error"]
        raise ExportFailed(body["error"])
    assert shop.download() == uninterrupted


def standby_open_transactions(pair: ReplicaPair) -> int:
    """Client backends of the shop database on the standby inside a transaction."""
    return pair.standby.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
        "AND backend_type = 'client backend' AND xact_start IS NOT NULL "
        "AND pid <> pg_backend_pid()",
        SHOP_DB,
    )


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def churn(pair: ReplicaPair) -> None:
    """Ordinary write traffic on the primary: rows updated, then vacuumed away. Replaying the
    vacuum conflicts with every standby snapshot that could still see those rows."""
    with pair.primary.connect(SHOP_DB) as conn:
        conn.execute("DROP TABLE IF EXISTS churn")
        conn.execute("CREATE TABLE churn (id int PRIMARY KEY, n int)")
        conn.execute(
            "INSERT INTO churn SELECT g, 0 FROM generate_series(1, 100) g ON CONFLICT DO NOTHING"
        )
        conn.execute("UPDATE churn SET n = n + 1")
        conn.execute("VACUUM churn")
    pair.flush_wal()


def test_replay_conflict_between_chunks_is_retried(shop, pg_pair):
    """The worker is frozen (SIGSTOP) between two chunks while the primary updates and
    vacuums rows; replaying the vacuum conflicts with the export's snapshot on the standby,
    which is canceled after ``max_standby_streaming_delay``. The run must read on from its
    last chunk."""
    pair = pg_pair
    with shop.worker("worker-stream-1"):
        _, uninterrupted = shop.export()
    log = shop.folder / "worker-stream-2.log"
    with shop.worker(log.stem, CHUNK_SIZE=1, CHECKPOINT_INTERVAL=0) as worker:
        shop.start()
        frozen: list[int] = []
        for _attempt in range(20):
            body = wait_for(
                lambda: (b := shop.status())["processed"] >= 20 and b, timeout=30, interval=0.02
            )
            if body["status"] != Status.RUNNING:
                break  # ended already (a conflict from the export's own checkpoints, say)
            frozen = descendants(worker.pid)
            signal_all(frozen, signal.SIGSTOP)
            if standby_open_transactions(pair):
                break
            signal_all(frozen, signal.SIGCONT)  # between two transactions: try again
            frozen = []
            time.sleep(0.01)
        try:
            churn(pair)
            if frozen:
                time.sleep(2)  # > max_standby_streaming_delay: replay cancels the session
        finally:
            signal_all(frozen, signal.SIGCONT)
        body = wait_for(
            lambda: (b := shop.status())["status"] in (Status.FINISHED, Status.ERROR) and b,
            timeout=30,
        )
    if body["status"] == Status.ERROR:
        assert "conflict with recovery" in pair.standby.log()
        # Canceled mid-statement, or terminated while idle in its transaction.
        assert "conflict with recovery" in body["error"] or "closed the connection" in body["error"]
        raise ExportFailed(body["error"])
    assert shop.download() == uninterrupted
