"""Database connections across RQ's processes.

RQ's maintenance runs the failure callback of an abandoned export job in the worker's own
process, and the worker forks a work horse for every job after it: no horse may run its
queries on a connection the worker opened, and the worker keeps none open.
"""

from __future__ import annotations

import gc
import os
import subprocess
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from django_report_export.connection import get_queue, get_redis
from django_report_export.models import ReportExport, Status
from django_report_export.processes import closing_new_connections, discard_inherited_connections

from .support.dbprobe import PROBE_DIR_VARIABLE, database_handles, read_queries, session_of
from .support.workers import WorkerProcess, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ORDERS = 1500
FAST_FAILURE = {
    "CHUNK_SIZE": 2,
    "CHECKPOINT_INTERVAL": 0,
    "HEARTBEAT_INTERVAL": 0.2,
    "STALE_AFTER": 1.5,
}


def status(api):
    return api.get("/api/report/orderRow/status").json()


def abandon_started_jobs() -> None:
    """Expire the entries of RQ's started registry, as if their worker had stopped
    heartbeating long ago (RQ waits a minute or more before it calls a job abandoned)."""
    key = get_queue().started_job_registry.key
    entries = get_redis().zrange(key, 0, -1)
    assert entries
    get_redis().zadd(key, dict.fromkeys(entries, 1), xx=True)


@pytest.mark.slow
def test_work_horses_after_a_cleanup_use_connections_of_their_own(api, settings, tmp_path):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **FAST_FAILURE}
    call_command("seed_shop", orders=ORDERS, seed=11, verbosity=0)
    api.post("/api/report/orderRow/start?format=json")
    lost = WorkerProcess(tmp_path / "lost.log", **FAST_FAILURE)
    wait_for(lambda: status(api)["processed"] >= 300)
    lost.kill()
    abandon_started_jobs()
    # No status read from here on: it would continue the export itself. Let the slot's
    # heartbeat go stale, so that the failure callback continues it.
    time.sleep(FAST_FAILURE["STALE_AFTER"] + 0.5)

    probe = tmp_path / "probe"
    probe.mkdir()
    env = {PROBE_DIR_VARIABLE: str(probe)}
    with WorkerProcess(tmp_path / "worker.log", env=env, **FAST_FAILURE) as worker:
        # Its maintenance, first thing, finds the job abandoned and runs the callback, which
        # queues the continuation that this worker's next work horse exports.
        export = wait_for(lambda: ReportExport.objects.filter(status=Status.FINISHED).first())
        handles = database_handles(worker.pid)
        worker_pid = worker.pid

    assert export.retries == 1
    assert export.processed == ORDERS
    assert "worker lost; continuing from row" in (tmp_path / "worker.log").read_text()
    queries = read_queries(probe)
    in_worker = [query for query in queries if query.pid == worker_pid]
    in_horses = [query for query in queries if query.pid != worker_pid]
    assert in_worker, "the failure callback ran no query in the worker's process"
    assert in_horses
    assert [query for query in queries if query.opened_by != query.pid] == []
    if connection.vendor in ("postgresql", "mysql"):
        # Seen by the server: no backend (PostgreSQL) or connection id (MariaDB/MySQL) served
        # both the worker and a horse.
        assert {query.session for query in in_horses}.isdisjoint(
            query.session for query in in_worker
        )
    # The callback closed what it opened: the idle worker holds no connection.
    assert handles == []


@pytest.mark.slow
def test_burst_workers_started_together_quit_as_soon_as_the_queue_is_empty(tmp_path):
    # redis-py 8.2.0 waits for RQ's pubsub thread, which may sleep for a minute after the
    # worker unsubscribed (pyproject.toml excludes that release): every test's burst worker,
    # and every deploy's warm shutdown, took up to 60 s more.
    for round_number in range(3):
        workers = [
            WorkerProcess(tmp_path / f"worker-{round_number}-{index}.log", burst=True)
            for index in range(2)
        ]
        for worker in workers:
            try:
                worker.process.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                pytest.fail(f"a burst worker with nothing to do ran on: {worker.log.read_text()}")
            assert worker.process.returncode == 0, worker.log.read_text()


def test_a_forked_process_discards_its_inherited_connection_and_leaves_it_working():
    users = get_user_model().objects
    users.count()
    inherited = connection.connection
    parent_session = session_of(connection)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child process)
        code = 1
        try:
            discard_inherited_connections()
            gc.collect()  # nothing finalizes the discarded connection
            users.count()
            answer = f"{session_of(connection)} {connection.connection is inherited}"
            os.write(write_end, answer.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    _, wait_status = os.waitpid(child, 0)
    with os.fdopen(read_end) as pipe:
        child_session, reused = pipe.read().split()
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert reused == "False"
    assert int(child_session) != parent_session
    # The parent's connection was neither closed nor used by the child: it still works, in the
    # same database session (on PostgreSQL, a close in the child would have ended it).
    assert connection.connection is inherited
    assert users.count() == 0
    assert session_of(connection) == parent_session


def test_closing_new_connections_closes_only_what_the_block_opened():
    users = get_user_model().objects
    connection.close()
    with closing_new_connections():
        users.count()
        assert connection.connection is not None
    assert connection.connection is None

    users.count()
    open_before = connection.connection
    with closing_new_connections():
        users.count()
    assert connection.connection is open_before
