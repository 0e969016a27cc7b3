"""``manage.py report_export``: every action, ``--wait`` and its exit codes, errors without
tracebacks; with a real Redis and burst RQ workers in this process."""

from __future__ import annotations

import csv
import datetime as dt
import io
import subprocess
import sys
import threading
import time

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.db import connection
from django.utils import timezone

from django_report_export import control
from django_report_export.management.exit_codes import (
    EXIT_CANCELED,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PAUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from django_report_export.models import ReportExport, Status
from django_report_export.registry import site
from django_report_export.status import StatusStore, now_ts
from testproject.shop.factories import ProductFactory
from testproject.shop.report_exports import ProductExport

from .support.users import make_user
from .support.workers import ROOT, worker_env

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> tuple[int, str, str]:
    """The command's exit code, stdout and stderr, as the shell would see them."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("report_export", *args, stdout=out, stderr=err)
    except CommandError as exc:
        err.write(str(exc))
        return exc.returncode, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


class Background(threading.Thread):
    """Runs the command in another thread while this one plays worker or second client."""

    def __init__(self, *args: str) -> None:
        super().__init__(daemon=True)
        self.args = args
        self.result: tuple[int, str, str] | None = None

    def run(self) -> None:
        try:
            self.result = run(*self.args)
        finally:
            connection.close()

    def outcome(self) -> tuple[int, str, str]:
        self.join(60)
        assert self.result is not None, "the command did not return"
        return self.result


def wait_for_export(status: int = Status.STARTING) -> ReportExport:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        export = ReportExport.objects.filter(status=status).first()
        if export is not None:
            return export
        time.sleep(0.02)
    raise AssertionError("no export showed up")


@pytest.fixture
def products():
    return ProductFactory.create_batch(40)


@pytest.fixture
def small_chunks(settings):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 5, "CHECKPOINT_INTERVAL": 0}


# --- start, status, history, download ----------------------------------------------------


def test_start_status_history_and_download(products, worker, tmp_path):
    code, out, _ = run(
        "start", "product", "--format", "csv", "--fields", "id,sku", "--filter", "is_active=true"
    )
    assert code == EXIT_OK
    assert out.startswith("product: Starting  id=")
    export = ReportExport.objects.get()
    assert export.fields == ["id", "sku"]
    assert export.filters == {"is_active": "true"}
    worker()

    code, out, _ = run("status", "product")
    assert code == EXIT_OK
    assert "product: Finished" in out
    assert "100.0%" in out
    code, out, _ = run("status", "product", "--json")
    assert '"status_name": "Finished"' in out

    code, out, _ = run("history", "product")
    assert code == EXIT_OK
    assert str(export.pk) in out
    assert "Finished" in out

    target = tmp_path / "products.csv"
    code, out, _ = run("download", "product", "-o", str(target))
    assert code == EXIT_OK
    assert f"Wrote {target}" in out
    rows = list(csv.reader(io.StringIO(target.read_text())))
    active = sorted(p.pk for p in products if p.is_active)
    assert rows[0] == ["id", "sku"]
    assert [int(row[0]) for row in rows[1:]] == active
    by_id = tmp_path / "again.csv"
    assert run("download", "product", "--id", str(export.pk), "-o", str(by_id))[0] == EXIT_OK
    assert by_id.read_bytes() == target.read_bytes()


def test_pause_resume_and_cancel(products):
    assert run("start", "product", "--format", "json")[0] == EXIT_OK
    code, out, _ = run("pause", "product")
    assert (code, out.splitlines()[0].split("  ")[0]) == (EXIT_OK, "product: Paused")
    code, out, _ = run("resume", "product")
    assert (code, out.splitlines()[0].split("  ")[0]) == (EXIT_OK, "product: Starting")
    code, out, _ = run("cancel", "product")
    assert (code, out.splitlines()[0].split("  ")[0]) == (EXIT_OK, "product: Canceled")
    assert ReportExport.objects.get().status == Status.CANCELED


# --- --wait ------------------------------------------------------------------------------


def test_wait_shows_progress_and_exits_0_when_finished(products, worker, small_chunks, settings):
    # Without the project's URLconf: a shop's imports its whole site (its API's views, their
    # schema), a third of a second of a command that only follows the export.
    settings.ROOT_URLCONF = "tests.no_such_urlconf"
    command = Background("start", "product", "--format", "csv", "--wait", "--interval", "0.02")
    command.start()
    wait_for_export()
    worker()
    code, out, err = command.outcome()
    assert code == EXIT_OK, err
    assert "[##############################] 100.0%  40/40 rows" in out
    assert "Finished: 40 rows" in out
    assert "report_export download product" in out


def test_wait_ends_as_soon_as_the_export_ends_not_at_the_next_interval(products, worker):
    # The slot's status changes are published: the wait between two reads ends with one.
    command = Background("start", "product", "--format", "csv", "--wait", "--interval", "30")
    command.start()
    wait_for_export()
    worker()
    ended = time.monotonic()
    code, out, err = command.outcome()
    assert code == EXIT_OK, err
    assert "Finished: 40 rows" in out
    assert time.monotonic() - ended < 5


def test_wait_ends_when_canceled_from_elsewhere_before_the_interval(products):
    command = Background("start", "product", "--format", "csv", "--wait", "--interval", "30")
    command.start()
    wait_for_export()
    time.sleep(0.2)  # the command is waiting, subscribed
    asked = time.monotonic()
    control.cancel(site.get("product"))
    code, _, err = command.outcome()
    assert code == EXIT_CANCELED, err
    assert time.monotonic() - asked < 5


def test_the_command_runs_the_package_checks_and_no_others(products, settings):
    """A problem of the project outside this package does not stop the command; one of its
    own checks does, as ``manage.py check`` would report it."""

    @checks.register("templates")
    def broken_elsewhere(app_configs=None, **kwargs):
        return [checks.Error("not this package's", id="elsewhere.E001")]

    def status() -> str:
        out = io.StringIO()
        call_command("report_export", "status", "product", stdout=out, skip_checks=False)
        return out.getvalue()

    try:
        assert "product: Ready" in status()
        settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "NO_SUCH_KEY": 1}
        with pytest.raises(SystemCheckError) as refused:
            status()
        assert "django_report_export.E007" in str(refused.value)
        assert "elsewhere.E001" not in str(refused.value)
    finally:
        checks.registry.registry.registered_checks.discard(broken_elsewhere)


def test_wait_exits_non_zero_when_canceled(products):
    command = Background("start", "product", "--format", "csv", "--wait", "--interval", "0.02")
    command.start()
    wait_for_export()
    control.cancel(site.get("product"))
    code, _, err = command.outcome()
    assert code == EXIT_CANCELED
    assert "Canceled" in err


def test_wait_exits_non_zero_when_replaced_by_a_newer_start(products):
    command = Background("start", "product", "--format", "csv", "--wait", "--interval", "0.02")
    command.start()
    wait_for_export()
    assert run("start", "product", "--format", "json")[0] == EXIT_OK
    code, _, err = command.outcome()
    assert code == EXIT_CANCELED
    # Polled after the new export took the slot, or between the cancel and that moment.
    assert "replaced by a newer one" in err or "Canceled by a newer start" in err


def test_wait_exits_non_zero_on_error(products, worker, monkeypatch):
    def broken(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ProductExport, "get_queryset", broken)
    command = Background("start", "product", "--format", "csv", "--wait", "--interval", "0.02")
    command.start()
    wait_for_export()
    worker()
    code, _, err = command.outcome()
    assert code == EXIT_FAILED
    assert "RuntimeError: disk on fire" in err
    assert len({EXIT_OK, EXIT_CANCELED, EXIT_FAILED, EXIT_PAUSED}) == 4


def test_wait_exits_non_zero_when_paused_and_resume_waits_again(products, worker):
    command = Background("start", "product", "--format", "csv", "--wait", "--interval", "0.02")
    command.start()
    wait_for_export()
    control.pause(site.get("product"))
    code, _, err = command.outcome()
    assert code == EXIT_PAUSED
    assert "Paused at row 0" in err

    command = Background("resume", "product", "--wait", "--interval", "0.02")
    command.start()
    wait_for_export()
    worker()
    assert command.outcome()[0] == EXIT_OK
    assert run("status", "product", "--wait")[0] == EXIT_OK  # already finished


# --- errors ------------------------------------------------------------------------------


def test_bad_parameters_are_named(products):
    code, _, err = run(
        "start", "product", "--format", "xml", "--fields", "id,secret", "--filter", "colour=red"
    )
    assert code == EXIT_USAGE
    assert "--format: Format 'xml' is not supported by service 'product'" in err
    assert "--fields: Unknown field(s) 'secret'" in err
    assert "--filter colour: Unknown query parameter 'colour'" in err
    code, _, err = run("start", "product", "--format", "csv", "--filter", "is_active")
    assert (code, err) == (EXIT_USAGE, "--filter 'is_active': expected KEY=VALUE.")
    code, _, err = run("start", "product", "--format", "csv", "--filter", "format=json")
    assert code == EXIT_USAGE
    assert not ReportExport.objects.exists()


def test_unknown_service_user_and_states():
    assert run("status", "nope") == (EXIT_USAGE, "", "Unknown service 'nope'.")
    code, _, err = run("start", "product", "--format", "csv", "--user", "ghost")
    assert (code, err) == (EXIT_USAGE, "Unknown user 'ghost'.")
    assert run("pause", "product")[0] == EXIT_NOT_FOUND
    assert run("resume", "product")[0] == EXIT_NOT_FOUND
    assert run("cancel", "product")[0] == EXIT_NOT_FOUND
    code, _, err = run("download", "product")
    assert (code, err) == (EXIT_NOT_FOUND, "No finished export to download. (service='product')")
    assert run("download", "product", "--id", "xyz")[0] == EXIT_USAGE
    assert run("history", "product")[1] == "No exports of product yet.\n"


def test_redis_down(settings):
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "gone": {"URL": "redis://127.0.0.1:1/0"}}
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "QUEUE": "gone", "REDIS_TIMEOUT": 0.5}
    for args in (("status", "product"), ("start", "product", "--format", "csv"), ("sweep",)):
        code, _, err = run(*args)
        assert code == EXIT_UNAVAILABLE, args
        assert "Redis" in err


def test_user_slots(settings, products, worker):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "SLOT_SCOPE": "user"}
    clerk = make_user("clerk", "shop.view_product")
    code, _, err = run("start", "product", "--format", "csv")
    assert code == EXIT_USAGE
    assert "--user is required" in err
    assert run("start", "product", "--format", "csv", "--user", "clerk")[0] == EXIT_OK
    export = ReportExport.objects.get()
    assert (export.owner, export.created_by) == (clerk, clerk)
    assert export.slot == f"product:user:{clerk.pk}"
    worker()
    assert "Finished" in run("status", "product", "--user", "clerk")[1]
    assert control.get_status(site.get("product"))["status"] == Status.READY  # nobody else's


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["status", "nope"], EXIT_USAGE, "Unknown service 'nope'."),
        (["start", "order", "--format", "csv"], EXIT_USAGE, "--format: Format 'csv'"),
        (["status", "order"], EXIT_UNAVAILABLE, "Redis did not return a status"),
    ],
)
def test_errors_in_a_real_process_have_no_traceback(args, code, message):
    env = worker_env()
    if code == EXIT_UNAVAILABLE:
        env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    done = subprocess.run(
        [sys.executable, "manage.py", "report_export", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


# --- cleanup and sweep -------------------------------------------------------------------


def aged(export_id, days: float) -> None:
    when = timezone.now() - dt.timedelta(days=days)
    ReportExport.objects.filter(pk=export_id).update(created_at=when, finished_at=when)


def test_cleanup_removes_old_files_and_records_but_keeps_active_ones(products, worker, export_root):
    service = site.get("product")
    old_finished = control.start(service, control.parse_request(service, {"format": ["csv"]}))
    worker()
    old_file = export_root / ReportExport.objects.get(pk=old_finished["id"]).file_name
    assert old_file.exists()
    aged(old_finished["id"], 40)
    recent = control.start(service, control.parse_request(service, {"format": ["json"]}))
    worker()
    category = site.get("category")
    active = control.start(category, control.parse_request(category, {"format": ["csv"]}))
    aged(active["id"], 400)  # Starting for ages: still kept

    code, out, _ = run("cleanup", "--dry-run")
    assert code == EXIT_OK
    assert f"Would delete product {old_finished['id']}" in out
    assert "Would delete 1 export(s) older than 30 day(s)" in out
    assert ReportExport.objects.count() == 3
    assert old_file.exists()

    code, out, _ = run("cleanup")
    assert code == EXIT_OK
    assert "Deleted 1 export(s)" in out
    assert not old_file.exists()
    left = {str(pk) for pk in ReportExport.objects.values_list("pk", flat=True)}
    assert left == {recent["id"], active["id"]}

    aged(recent["id"], 3)
    assert "Deleted 1 export(s) older than 2 day(s)" in run("cleanup", "--days", "2")[1]
    # The slot no longer points at a deleted export: it is rebuilt from what is left.
    assert control.get_status(service)["status"] == Status.READY
    assert run("cleanup", "--days", "-1")[0] == EXIT_USAGE


def test_sweep_continues_an_export_whose_worker_was_lost(products, redis_db):
    service = site.get("product")
    status = control.start(service, control.parse_request(service, {"format": ["csv"]}))
    store = StatusStore(redis_db)
    store.transition(
        "product", {"status": Status.RUNNING, "run": "lost", "heartbeat": now_ts() - 3600}
    )
    ReportExport.objects.filter(pk=status["id"]).update(status=Status.RUNNING, run_token="lost")
    code, out, _ = run("sweep")
    assert code == EXIT_OK
    assert f"Continued export {status['id']} (its worker was lost)." in out
    assert "Swept: 1 export(s) continued." in out
    assert ReportExport.objects.get().retries == 1
    assert run("sweep")[1] == "Swept: 0 export(s) continued.\n"
