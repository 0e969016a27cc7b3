"""The schedule verbs of ``manage.py report_export``: ``schedules`` (each schedule with its
next run), ``schedule`` (create or change one) and ``tick`` (start the due occurrences, once
or every ``--every`` seconds with ``--loop``)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections
from django.utils import timezone
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from django_report_export.management.exit_codes import EXIT_USAGE
from django_report_export.models import ReportSchedule, ScheduleRun
from django_report_export.registry import site
from django_report_export.schedules import plan, schedule_errors
from django_report_export.schedules import tick as run_tick


def schedules(command: BaseCommand, options: dict[str, Any]) -> None:
    rows = [
        (
            _("name"),
            _("service"),
            _("format"),
            _("cron"),
            _("time zone"),
            _("enabled"),
            _("next run"),
            _("last run"),
        )
    ]
    for schedule in ReportSchedule.objects.order_by("name"):
        rows.append(
            (
                schedule.name,
                schedule.service,
                schedule.format,
                schedule.cron,
                schedule.timezone,
                _("yes") if schedule.enabled else _("no"),
                local_time(schedule.next_run_at),
                local_time(schedule.last_run_at),
            )
        )
    if len(rows) == 1:
        command.stdout.write(_("No schedules yet."))
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        command.stdout.write(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        )


def local_time(value: dt.datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z") if value else "-"


def tick(command: BaseCommand, options: dict[str, Any]) -> None:
    now = parse_now(options.get("now"))
    every = options["every"]
    if options["loop"] and now is not None:
        raise CommandError(_("--now and --loop exclude each other."), returncode=EXIT_USAGE)
    while True:
        try:
            runs = run_tick(now)
        except (RedisError, DatabaseError, ConnectionError) as exc:
            if not options["loop"]:
                raise
            command.stderr.write(f"{timezone.now():%H:%M:%S} {exc}; " + _("retrying."))
            close_old_connections()  # a connection the database dropped is opened anew
        else:
            for run in runs:
                command.stdout.write(run_line(run))
            if not options["loop"] or options["verbosity"] >= 2:
                command.stdout.write(_("Ticked: %(count)s occurrence(s).") % {"count": len(runs)})
        if not options["loop"]:
            return
        time.sleep(max(every, 1.0))


def run_line(run: ScheduleRun) -> str:
    values = {
        "schedule": run.schedule.name,
        "occurrence": local_time(run.occurrence),
        "export": run.export_id,
        "reason": run.reason,
    }
    if run.outcome == ScheduleRun.Outcome.STARTED:
        return _("%(schedule)s, %(occurrence)s: started export %(export)s.") % values
    if run.outcome == ScheduleRun.Outcome.SKIPPED:
        return _("%(schedule)s, %(occurrence)s: skipped. %(reason)s") % values
    return _("%(schedule)s, %(occurrence)s: failed. %(reason)s") % values


def parse_now(value: str | None) -> dt.datetime | None:
    """``--now``: an ISO 8601 time; without an offset, in the current time zone."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            _("--now %(value)r is not an ISO 8601 time.") % {"value": value},
            returncode=EXIT_USAGE,
        ) from None
    return parsed if parsed.tzinfo else timezone.make_aware(parsed)


def schedule(command: BaseCommand, options: dict[str, Any]) -> None:
    """``schedule NAME``: create the schedule, or change the one of that name, validated as the
    admin's form validates it; it runs from its next occurrence."""
    owner = find_owner(options["owner"])
    values: dict[str, Any] = {
        "service": options["service"],
        "format": options["format"],
        "compression": options["compression"] or "",
        "fields": [name for name in (options["fields"] or "").split(",") if name],
        "options": pairs(options["option"], "--option"),
        "filters": pairs(options["filter"], "--filter"),
        "cron": options["cron"],
        "timezone": options["timezone"],
        "enabled": not options["disabled"],
        "owner": owner,
        "recipients": options["recipient"] or [],
    }
    candidate = ReportSchedule(name=options["name"], **values)
    errors = schedule_errors(candidate)
    readable = (
        owner is None or "service" in errors or site.get(candidate.service).has_permission(owner)
    )
    if not readable:
        errors["owner"] = [_("This user may not read the service's exports.")]
    if errors:
        lines = [
            f"{field}: {message}" for field, messages in errors.items() for message in messages
        ]
        raise CommandError("\n".join(lines), returncode=EXIT_USAGE)
    values["next_run_at"] = plan(candidate)
    saved, created = ReportSchedule.objects.update_or_create(name=options["name"], defaults=values)
    message = _("Created schedule %(name)s.") if created else _("Changed schedule %(name)s.")
    command.stdout.write(message % {"name": saved.name})
    command.stdout.write(_("Next run: %(when)s.") % {"when": local_time(saved.next_run_at)})


def find_owner(username: str | None) -> Any:
    if not username:
        return None
    try:
        return get_user_model()._default_manager.get_by_natural_key(username)
    except ObjectDoesNotExist:
        raise CommandError(
            _("--owner: no user %(name)r.") % {"name": username}, returncode=EXIT_USAGE
        ) from None


def pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """``NAME=VALUE`` arguments, as a start's query parameters."""
    found: dict[str, str] = {}
    for value in values or []:
        name, equals, text = value.partition("=")
        if not equals or not name:
            raise CommandError(
                _("%(flag)s %(value)r is not NAME=VALUE.") % {"flag": flag, "value": value},
                returncode=EXIT_USAGE,
            )
        found[name] = text
    return found
