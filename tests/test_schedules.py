"""Scheduled exports: ``schedules.tick`` with a controllable clock (``now`` passed in, no
sleeps), a real Redis and burst RQ workers. Two tickers racing start one export per
occurrence; downtime over three occurrences gives one catch-up run; an occurrence whose
previous export is still active is skipped and recorded; the nights Europe/Berlin changes its
clocks; the admin's validated form; the command; the export finishing and showing its schedule
in the history."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import subprocess
import sys
import threading

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone

from django_report_export import cron, schedules
from django_report_export.download import open_file
from django_report_export.models import ReportExport, ReportSchedule, ScheduleRun, Status
from testproject.shop.factories import OrderFactory, ProductFactory
from testproject.shop.models import Order, Product

from .support.burst import run_worker
from .support.users import make_user
from .support.workers import ROOT, worker_env

pytestmark = pytest.mark.django_db(transaction=True)

UTC = dt.UTC
Outcome = ScheduleRun.Outcome


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


@pytest.fixture
def owner():
    return make_user("finance", "shop.view_product")


def make_schedule(owner, cron="0 6 * * *", zone="Europe/Berlin", now=None, **extra):
    schedule = ReportSchedule.objects.create(
        name=extra.pop("name", "morning products"),
        service="product",
        format="csv",
        fields=["id", "sku", "stock"],
        options={"delimiter": ";"},
        filters={"is_active": "true"},
        cron=cron,
        timezone=zone,
        owner=owner,
        **extra,
    )
    schedule.next_run_at = schedules.plan(schedule, now or at(2026, 1, 1, 0, 0))
    schedule.save(update_fields=["next_run_at"])
    return schedule


def runs(schedule):
    return list(ScheduleRun.objects.filter(schedule=schedule).order_by("occurrence"))


# --- the occurrences -----------------------------------------------------------------------


def test_a_new_schedule_is_planned_by_the_first_tick_not_run(owner):
    schedule = make_schedule(owner)
    ReportSchedule.objects.filter(pk=schedule.pk).update(next_run_at=None)
    assert schedules.tick(at(2026, 1, 1, 7, 0)) == []
    schedule.refresh_from_db()
    assert schedule.next_run_at == at(2026, 1, 2, 5, 0)  # 06:00 in Berlin, in winter
    assert not ReportExport.objects.exists()


def test_a_due_occurrence_starts_one_ordinary_export(owner):
    schedule = make_schedule(owner)
    assert schedule.next_run_at == at(2026, 1, 1, 5, 0)
    assert schedules.tick(at(2026, 1, 1, 4, 59)) == []
    (run,) = schedules.tick(at(2026, 1, 1, 5, 0, 20))
    assert (run.outcome, run.occurrence, run.missed) == (Outcome.STARTED, at(2026, 1, 1, 5), 0)
    export = ReportExport.objects.get()
    assert str(export.pk) == str(run.export_id)
    assert (export.schedule, export.created_by, export.slot) == (schedule, owner, "product")
    assert (export.format, export.fields, export.filters) == (
        "csv",
        ["id", "sku", "stock"],
        {"is_active": "true"},
    )
    assert export.options["delimiter"] == ";"
    schedule.refresh_from_db()
    assert (schedule.last_run_at, schedule.next_run_at) == (at(2026, 1, 1, 5), at(2026, 1, 2, 5))
    # The same minute again: nothing is due.
    assert schedules.tick(at(2026, 1, 1, 5, 0, 40)) == []
    assert ReportExport.objects.count() == 1


def test_downtime_over_three_occurrences_runs_once(owner):
    schedule = make_schedule(owner)
    # Down from before the 1st's 06:00 until after the 3rd's: three occurrences passed.
    (run,) = schedules.tick(at(2026, 1, 3, 12, 0))
    assert (run.outcome, run.occurrence, run.missed) == (Outcome.STARTED, at(2026, 1, 3, 5), 2)
    assert ReportExport.objects.count() == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at == at(2026, 1, 4, 5, 0)
    assert schedules.tick(at(2026, 1, 3, 12, 1)) == []
    assert [r.occurrence for r in runs(schedule)] == [at(2026, 1, 3, 5)]


def test_an_active_previous_export_is_skipped_and_recorded_never_stacked(owner):
    ProductFactory.create_batch(5, is_active=True)
    schedule = make_schedule(owner, cron="*/15 * * * *")
    (first,) = schedules.tick(at(2026, 1, 1, 0, 15))
    assert first.outcome == Outcome.STARTED
    # Its job has not run yet: the export is still Starting at the next occurrence.
    (second,) = schedules.tick(at(2026, 1, 1, 0, 30))
    assert second.outcome == Outcome.SKIPPED
    assert str(second.export_id) == str(first.export_id)
    assert str(first.export_id) in second.reason
    stored = ScheduleRun.objects.get(pk=second.pk)
    assert (stored.outcome, stored.reason) == (Outcome.SKIPPED, second.reason)
    assert ReportExport.objects.count() == 1
    assert ReportExport.objects.get().status == Status.STARTING  # not canceled by the tick
    run_worker()
    assert ReportExport.objects.get().status == Status.FINISHED
    (third,) = schedules.tick(at(2026, 1, 1, 0, 45))
    assert third.outcome == Outcome.STARTED
    assert ReportExport.objects.count() == 2
    assert [r.outcome for r in runs(schedule)] == [Outcome.STARTED, Outcome.SKIPPED, "started"]


def test_a_start_that_fails_is_recorded_and_the_schedule_goes_on(owner):
    schedule = make_schedule(owner)
    # Saved past the validation: a filter the service no longer has.
    ReportSchedule.objects.filter(pk=schedule.pk).update(filters={"colour": "red"})
    (run,) = schedules.tick(at(2026, 1, 1, 5, 0))
    assert run.outcome == Outcome.FAILED
    assert "colour" in ScheduleRun.objects.get().reason
    assert not ReportExport.objects.exists()
    schedule.refresh_from_db()
    assert schedule.next_run_at == at(2026, 1, 2, 5, 0)


def test_an_owner_who_lost_the_read_permission_gets_no_export(owner):
    make_schedule(owner)
    owner.user_permissions.clear()
    (run,) = schedules.tick(at(2026, 1, 1, 5, 0))
    assert run.outcome == Outcome.FAILED
    assert "may no longer read" in run.reason
    assert not ReportExport.objects.exists()


# --- two tickers ---------------------------------------------------------------------------


def test_a_ticker_that_read_the_schedule_before_another_claimed_it_starts_nothing(owner):
    schedule = make_schedule(owner)
    now = at(2026, 1, 1, 5, 0, 10)
    stale = ReportSchedule.objects.get(pk=schedule.pk)  # the second ticker's read
    (run,) = schedules.tick(now)
    assert run.outcome == Outcome.STARTED
    assert schedules.run_due(stale, now) is None
    assert schedules.run_due(stale, at(2026, 1, 1, 5, 0, 50)) is None  # its clock a bit later
    assert ReportExport.objects.count() == 1
    assert ScheduleRun.objects.count() == 1


def test_the_unique_run_per_occurrence_refuses_a_second_claim(owner):
    schedule = make_schedule(owner)
    seen = schedule.next_run_at
    first = schedules.claim(schedule, seen, seen, 0, at(2026, 1, 2, 5))
    assert first is not None
    # Even with next_run_at put back (a restored backup, an edit by hand), no second claim.
    ReportSchedule.objects.filter(pk=schedule.pk).update(next_run_at=seen)
    assert schedules.claim(schedule, seen, seen, 0, at(2026, 1, 2, 5)) is None
    assert ScheduleRun.objects.count() == 1


@pytest.mark.skipif("connection.vendor == 'sqlite'", reason="one writer at a time in SQLite")
def test_tickers_racing_in_threads_start_one_export_per_occurrence(owner):
    schedule = make_schedule(owner)
    tickers = 4
    barrier = threading.Barrier(tickers)
    results: list[list[ScheduleRun]] = []
    failures: list[BaseException] = []

    def ticker(now: dt.datetime) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(schedules.tick(now))
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)
        finally:
            connection.close()

    for now in (at(2026, 1, 1, 5, 0, 5), at(2026, 1, 2, 5, 0, 5)):
        threads = [threading.Thread(target=ticker, args=(now,)) for _ in range(tickers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert not failures
    started = [run for result in results for run in result]
    assert [run.outcome for run in started] == [Outcome.STARTED, Outcome.SKIPPED]
    assert [r.occurrence for r in runs(schedule)] == [at(2026, 1, 1, 5), at(2026, 1, 2, 5)]
    assert ReportExport.objects.count() == 1


@pytest.mark.slow
def test_two_ticker_processes_at_once_start_one_export(owner):
    schedule = make_schedule(owner)
    command = [sys.executable, "manage.py", "report_export", "tick"]
    command += ["--now", "2026-01-01T06:00:30+01:00"]
    env = worker_env()
    tickers = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [ticker.communicate(timeout=60)[0] for ticker in tickers]
    assert [ticker.returncode for ticker in tickers] == [0, 0]
    assert sorted("started export" in output for output in outputs) == [False, True]
    assert [r.occurrence for r in runs(schedule)] == [at(2026, 1, 1, 5)]
    assert ReportExport.objects.filter(schedule=schedule).count() == 1


# --- daylight saving time in Europe/Berlin -------------------------------------------------


def test_spring_forward_the_0230_that_does_not_exist_runs_once_at_0330(owner):
    schedule = make_schedule(owner, cron="30 2 * * *", now=at(2026, 3, 28, 2, 0))
    # 2026-03-29: the clocks jump from 02:00 CET to 03:00 CEST; 02:30 never happens.
    assert schedule.next_run_at == at(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert schedules.tick(at(2026, 3, 29, 0, 59)) == []  # 01:59 CET
    (run,) = schedules.tick(at(2026, 3, 29, 1, 30))
    assert run.occurrence == at(2026, 3, 29, 1, 30)
    schedule.refresh_from_db()
    assert schedule.next_run_at == at(2026, 3, 30, 0, 30)  # 02:30 CEST the day after
    assert schedules.tick(at(2026, 3, 29, 23, 0)) == []
    assert len(runs(schedule)) == 1


def test_fall_back_the_0230_that_happens_twice_runs_once(owner):
    schedule = make_schedule(owner, cron="30 2 * * *", now=at(2026, 10, 24, 12, 0))
    # 2026-10-25: the clocks go back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
    assert schedule.next_run_at == at(2026, 10, 25, 0, 30)  # the first 02:30 (CEST)
    (run,) = schedules.tick(at(2026, 10, 25, 0, 30))
    assert run.occurrence == at(2026, 10, 25, 0, 30)
    assert schedules.tick(at(2026, 10, 25, 1, 30)) == []  # the second 02:30 (CET)
    schedule.refresh_from_db()
    assert schedule.next_run_at == at(2026, 10, 26, 1, 30)  # 02:30 CET
    assert len(runs(schedule)) == 1


def occurrences(expression, start, count, zone="Europe/Berlin"):
    found = []
    for _ in range(count):
        start = cron.next_after(expression, zone, start)
        found.append(start)
    return found


def test_quarter_hours_through_spring_forward_run_each_instant_once():
    # 01:45 CET, then 03:00 CEST (the 02:00 that does not exist), 03:15 CEST, ...
    found = occurrences("*/15 * * * *", at(2026, 3, 29, 0, 30), 4)
    quarters = [(0, 45), (1, 0), (1, 15), (1, 30)]
    assert found == [at(2026, 3, 29, hour, minute) for hour, minute in quarters]


def test_quarter_hours_through_fall_back_run_the_repeated_hour_once():
    # 02:45 CEST, then 03:00 CET: the second 02:00-02:45 (CET) gets no runs.
    found = occurrences("*/15 * * * *", at(2026, 10, 25, 0, 30), 2)
    assert found == [at(2026, 10, 25, 0, 45), at(2026, 10, 25, 2, 0)]


def test_a_month_of_missed_minutes_is_one_run_for_the_latest():
    latest, missed = cron.latest_due("* * * * *", "UTC", at(2026, 1, 1), at(2026, 2, 1, 8, 30, 5))
    assert latest == at(2026, 2, 1, 8, 30)
    assert missed >= cron.COUNT_LIMIT


def test_a_schedule_in_utc_keeps_its_hours_over_the_change(owner):
    schedule = make_schedule(owner, cron="0 * * * *", zone="UTC", now=at(2026, 10, 25, 0, 0))
    for hour in (1, 2, 3):
        (run,) = schedules.tick(at(2026, 10, 25, hour, 0))
        assert run.outcome == Outcome.STARTED
        call_command("report_export", "cancel", "product", stdout=io.StringIO())
    assert [r.occurrence.hour for r in runs(schedule)] == [1, 2, 3]


# --- the export, its history, its recipients -----------------------------------------------


def test_the_scheduled_export_finishes_and_shows_its_schedule_in_the_history(owner, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    ProductFactory.create_batch(6, is_active=True)
    ProductFactory.create_batch(3, is_active=False)
    schedule = make_schedule(owner, recipients=["books@example.com"])
    (run,) = schedules.tick(at(2026, 1, 1, 5, 0))
    run_worker()
    export = ReportExport.objects.get(pk=run.export_id)
    assert export.status == Status.FINISHED
    with open_file(export) as source:
        rows = list(csv.reader(io.StringIO(source.read().decode("utf-8")), delimiter=";"))
    expected = Product.objects.filter(is_active=True).order_by("pk")
    assert rows[0] == ["id", "sku", "stock"]
    assert rows[1:] == [[str(p.pk), p.sku, str(p.stock)] for p in expected]

    client = Client()
    client.force_login(owner)
    (entry,) = client.get("/api/report/product/history").json()["results"]
    assert (entry["id"], entry["schedule"], entry["created_by"]) == (
        str(export.pk),
        schedule.name,
        "finance",
    )
    downloaded = client.get(f"/api/report/product/download?id={export.pk}")
    assert downloaded.status_code == 200
    assert b"".join(downloaded.streaming_content).decode("utf-8") == source_text(export)
    out = io.StringIO()
    call_command("report_export", "history", "product", stdout=out)
    assert "morning products" in out.getvalue()
    assert [message.to for message in mail.outbox] == [["books@example.com"]]

    admin = make_user("boss", is_staff=True, is_superuser=True)
    client.force_login(admin)
    listing = client.get(
        f"/admin/django_report_export/reportexport/?schedule__id__exact={schedule.pk}"
    )
    assert "morning products" in listing.content.decode()
    page = client.get(f"/admin/django_report_export/reportexport/{export.pk}/change/")
    assert "morning products" in page.content.decode()


def source_text(export):
    with open_file(export) as source:
        return source.read().decode("utf-8")


# --- the admin -----------------------------------------------------------------------------


@pytest.fixture
def staff():
    user = make_user(
        "planner",
        "shop.view_product",
        "django_report_export.add_reportschedule",
        "django_report_export.change_reportschedule",
        "django_report_export.view_reportschedule",
        is_staff=True,
    )
    client = Client()
    client.force_login(user)
    return client


ADD_URL = "/admin/django_report_export/reportschedule/add/"


def form_data(**changes):
    data = {
        "name": "nightly",
        "service": "product",
        "format": "csv",
        "compression": "",
        "fields": '["id", "sku"]',
        "options": '{"delimiter": ";"}',
        "filters": '{"is_active": "true"}',
        "cron": "0 6 * * *",
        "timezone": "Europe/Berlin",
        "enabled": "on",
        "owner": "",
        "recipients": "[]",
        "webhooks": "[]",
        "runs-TOTAL_FORMS": "0",
        "runs-INITIAL_FORMS": "0",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"format": "xml"}, "format", "not supported by service"),
        ({"fields": '["id", "colour"]'}, "fields", "colour"),
        ({"filters": '{"colour": "red"}'}, "filters", "colour"),
        ({"filters": '{"price_min": "cheap"}'}, "filters", "price_min"),
        ({"options": '{"delimiter": "::"}'}, "options", "delimiter"),
        ({"cron": "0 6 * *"}, "cron", "Five fields"),
        ({"cron": "0 25 * * *"}, "cron", "Not a valid cron"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "Unknown time zone"),
        ({"recipients": '["not an address"]'}, "recipients", "Not an email"),
        ({"webhooks": '[{"url": "ftp://x", "secret": "s"}]'}, "webhooks", "http"),
    ],
)
def test_the_admin_form_refuses_what_a_start_would_refuse(staff, changes, field, text):
    response = staff.post(ADD_URL, form_data(**changes))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert text in " ".join(errors[field])
    assert not ReportSchedule.objects.exists()


def test_the_admin_creates_a_schedule_planned_and_listed_with_its_next_run(staff):
    response = staff.post(ADD_URL, form_data(owner=""))
    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule = ReportSchedule.objects.get()
    assert schedule.next_run_at is not None
    assert schedule.next_run_at.astimezone(dt.UTC).minute == 0
    listing = staff.get("/admin/django_report_export/reportschedule/").content.decode()
    assert "nightly" in listing
    assert "next run" in listing.lower()


def test_the_admin_takes_empty_json_fields_as_empty(staff):
    data = form_data(fields="", options="", filters="", recipients="", webhooks="")
    response = staff.post(ADD_URL, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule = ReportSchedule.objects.get()
    assert (schedule.fields, schedule.options, schedule.filters) == ([], {}, {})
    assert (schedule.recipients, schedule.webhooks) == ([], [])


def test_changing_the_cron_expression_plans_the_next_run_again(staff):
    staff.post(ADD_URL, form_data())
    schedule = ReportSchedule.objects.get()
    ReportSchedule.objects.filter(pk=schedule.pk).update(next_run_at=at(2020, 1, 1, 5))
    url = f"/admin/django_report_export/reportschedule/{schedule.pk}/change/"
    response = staff.post(url, form_data(cron="15 7 * * *"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule.refresh_from_db()
    assert schedule.next_run_at > at(2026, 1, 1)
    assert schedule.next_run_at.minute == 15
    response = staff.post(url, form_data(cron="15 7 * * *", enabled=""))
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.next_run_at) == (False, None)


def test_the_admin_refuses_an_owner_who_may_not_read_the_service(staff):
    outsider = make_user("outsider")
    response = staff.post(ADD_URL, form_data(owner=str(outsider.pk)))
    assert "owner" in response.context["adminform"].form.errors


# --- the command ---------------------------------------------------------------------------


def test_the_command_lists_schedules_and_ticks_at_a_given_time(owner):
    make_schedule(owner)
    out = io.StringIO()
    call_command("report_export", "schedules", stdout=out)
    lines = out.getvalue().splitlines()
    assert "next run" in lines[0]
    assert "morning products" in lines[1]
    assert "2026-01-01 06:00" in lines[1]
    out = io.StringIO()
    call_command("report_export", "tick", "--now", "2026-01-01T05:00:30+00:00", stdout=out)
    assert "morning products" in out.getvalue()
    assert "started export" in out.getvalue()
    assert ReportExport.objects.filter(schedule__name="morning products").count() == 1


def test_the_tick_command_refuses_a_bad_time_and_now_with_loop():
    with pytest.raises(CommandError, match="ISO 8601") as bad:
        call_command("report_export", "tick", "--now", "tomorrow", stdout=io.StringIO())
    assert bad.value.returncode == 2
    with pytest.raises(CommandError, match="exclude"):
        call_command(
            "report_export", "tick", "--loop", "--now", "2026-01-01T06:00", stdout=io.StringIO()
        )


def test_a_schedule_with_since_last_exports_each_row_once_across_its_runs():
    owner = make_user("books", "shop.view_order")
    schedule = ReportSchedule.objects.create(
        name="new orders",
        service="orderRow",
        format="jsonl",
        fields=["id", "number"],
        options={"since": "last"},
        cron="0 * * * *",
        timezone="UTC",
        owner=owner,
    )
    schedule.full_clean()
    schedule.next_run_at = schedules.plan(schedule, at(2026, 1, 1, 0, 0))
    schedule.save(update_fields=["next_run_at"])
    exported: list[int] = []
    for hour in (1, 2, 3):
        OrderFactory.create_batch(3, created_at=timezone.now())  # written now, not backdated
        (run,) = schedules.tick(at(2026, 1, 1, hour, 0))
        run_worker()
        export = ReportExport.objects.get(pk=run.export_id)
        assert export.status == Status.FINISHED
        assert export.window_to is not None
        with open_file(export) as source:
            exported += [json.loads(line)["id"] for line in source.read().splitlines()]
    assert sorted(exported) == sorted(Order.objects.values_list("pk", flat=True))
    assert len(exported) == 9


def test_the_schedule_command_creates_and_changes_a_schedule_validated_like_the_admin(owner):
    out = io.StringIO()
    args = ["report_export", "schedule", "nightly stock", "--service", "product"]
    args += ["--format", "csv", "--cron", "30 2 * * *", "--timezone", "Europe/Berlin"]
    args += ["--owner", "finance", "--fields", "id,sku", "--option", "delimiter=;"]
    args += ["--filter", "is_active=true", "--recipient", "stock@example.com"]
    call_command(*args, stdout=out)
    assert "Created schedule nightly stock." in out.getvalue()
    schedule = ReportSchedule.objects.get(name="nightly stock")
    assert (schedule.service, schedule.format, schedule.cron) == ("product", "csv", "30 2 * * *")
    assert (schedule.fields, schedule.options, schedule.filters) == (
        ["id", "sku"],
        {"delimiter": ";"},
        {"is_active": "true"},
    )
    assert (schedule.owner, schedule.recipients, schedule.enabled) == (
        owner,
        ["stock@example.com"],
        True,
    )
    assert schedule.next_run_at is not None
    assert schedule.next_run_at > timezone.now()
    call_command(*args[:-4], "--disabled", stdout=out)
    assert "Changed schedule nightly stock." in out.getvalue()
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.filters, ReportSchedule.objects.count()) == (False, {}, 1)
    listed = io.StringIO()
    call_command("report_export", "schedules", stdout=listed)
    assert "nightly stock" in listed.getvalue()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--cron": "61 * * * *"}, "cron: "),
        ({"--timezone": "Mars/Olympus"}, "timezone: "),
        ({"--format": "pdf"}, "format: "),
        ({"--service": "nope"}, "service: "),
        ({"--fields": "id,nope"}, "fields: "),
        ({"--owner": "nobody"}, "--owner: no user 'nobody'"),
        ({"--owner": "clerk"}, "owner: This user may not read"),
        ({"--option": "delimiter"}, "--option 'delimiter' is not NAME=VALUE"),
    ],
)
def test_the_schedule_command_refuses_what_a_start_refuses(owner, change, message):
    make_user("clerk", "shop.view_order")
    values = {
        "--service": "product",
        "--format": "csv",
        "--cron": "0 6 * * *",
        "--owner": "finance",
    }
    values.update(change)
    args = [item for pair in values.items() for item in pair]
    with pytest.raises(CommandError, match=re.escape(message)) as refused:
        call_command("report_export", "schedule", "bad", *args, stdout=io.StringIO())
    assert refused.value.returncode == 2
    assert not ReportSchedule.objects.exists()
