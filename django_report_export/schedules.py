"""Scheduled exports: ``tick`` starts every enabled schedule's due occurrence, once.

One pass (``tick``, the ``report_export tick`` command) takes each enabled ``ReportSchedule``
whose ``next_run_at`` has come and

1. finds the latest occurrence at or before now: after downtime the missed ones are not run
   one by one, only the latest, once (``ScheduleRun.missed`` counts the others);
2. claims it: one transaction moves ``next_run_at`` past now with a conditional ``UPDATE``
   (``WHERE next_run_at = <the value read>``) and inserts the ``ScheduleRun`` of the
   occurrence, unique per (schedule, occurrence). Of two tickers (processes, threads, hosts)
   only one updates the row; the other starts nothing;
3. starts the export as the API does (``control.start``) in the schedule owner's slot,
   recorded under the schedule, if the owner may still read the service. An export still
   active in that slot is not replaced: the occurrence is skipped, and the run says so.

A claimed occurrence is never claimed again: if its start fails (Redis away, the schedule's
parameters no longer valid) the run records why, and the next occurrence comes as planned.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from redis.exceptions import RedisError

from django_report_export import control
from django_report_export.conf import endpoint_problem
from django_report_export.cron import cron_error, latest_due, next_after, time_zone
from django_report_export.exceptions import (
    InvalidExportRequest,
    ReportExportError,
    SlotBusy,
    UnknownService,
)
from django_report_export.models import ReportSchedule, ScheduleRun
from django_report_export.query import RESERVED_PARAMETERS, ExportRequest, parse_request
from django_report_export.registry import site

logger = logging.getLogger(__name__)

Outcome = ScheduleRun.Outcome
#: Start parameters a schedule names in its own fields, not in ``options``.
OWN_PARAMETERS = ("format", "fields", "compression", "notify")


# --- a schedule's start --------------------------------------------------------------------


def request_params(schedule: ReportSchedule) -> dict[str, list[str]]:
    """The schedule's start as the query parameters of the API's start."""
    params: dict[str, list[str]] = {"format": [schedule.format]}
    if schedule.fields:
        params["fields"] = [",".join(str(name) for name in schedule.fields)]
    if schedule.compression:
        params["compression"] = [schedule.compression]
    for name, value in {**(schedule.options or {}), **(schedule.filters or {})}.items():
        values = value if isinstance(value, list) else [value]
        params[str(name)] = [parameter_text(item) for item in values]
    return params


def parameter_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def build_request(schedule: ReportSchedule) -> ExportRequest:
    """The validated start of the schedule; ``InvalidExportRequest`` as a start would give."""
    return parse_request(site.get(schedule.service), request_params(schedule))


def schedule_errors(schedule: ReportSchedule) -> dict[str, list[str]]:
    """Every problem of ``schedule``, by model field name: its start validated as the API
    validates one (a 400 there is an error here), its cron expression, time zone, recipients
    and webhooks. Empty: the schedule can run."""
    errors: dict[str, list[str]] = {}
    problem = cron_error(schedule.cron or "")
    if problem:
        errors["cron"] = [problem]
    try:
        time_zone(schedule.timezone or "")
    except ValueError as exc:
        errors["timezone"] = [str(exc)]
    errors.update(shape_errors(schedule))
    if errors.keys() & {"fields", "options", "filters"}:
        return errors
    try:
        build_request(schedule)
    except UnknownService:
        errors["service"] = [f"Unknown service {schedule.service!r}."]
    except InvalidExportRequest as exc:
        for name, messages in exc.errors.items():
            field = field_of(schedule, name)
            shown = messages if field == name else [f"{name}: {m}" for m in messages]
            errors.setdefault(field, []).extend(shown)
    return errors


def shape_errors(schedule: ReportSchedule) -> dict[str, list[str]]:
    """The JSON fields' shapes: what the start's own validation cannot be handed."""
    errors: dict[str, list[str]] = {}
    if not isinstance(schedule.fields, list) or not all(
        isinstance(name, str) for name in schedule.fields
    ):
        errors["fields"] = ["A list of field names."]
    for field in ("options", "filters"):
        value = getattr(schedule, field)
        if not isinstance(value, Mapping):
            errors[field] = ['An object of query parameters, e.g. {"name": "value"}.']
    if "options" not in errors:
        own = [name for name in schedule.options if name in OWN_PARAMETERS]
        if own:
            errors["options"] = [f"{', '.join(own)}: set by the schedule's own fields."]
    recipients = schedule.recipients
    if not isinstance(recipients, list):
        errors["recipients"] = ["A list of email addresses."]
    else:
        for address in recipients:
            try:
                validate_email(address)
            except ValidationError:
                errors.setdefault("recipients", []).append(f"Not an email address: {address!r}.")
    hooks = schedule.webhooks
    if not isinstance(hooks, list):
        errors["webhooks"] = ['A list of endpoints {"url", "secret", "events"}.']
    else:
        problems = [problem for problem in map(endpoint_problem, hooks) if problem]
        if problems:
            errors["webhooks"] = [problem[0].upper() + problem[1:] + "." for problem in problems]
    return errors


def field_of(schedule: ReportSchedule, parameter: str) -> str:
    """The model field a start parameter came from."""
    if parameter in ("format", "fields", "compression"):
        return parameter
    if parameter in (schedule.filters or {}):
        return "filters"
    if parameter in RESERVED_PARAMETERS or parameter in (schedule.options or {}):
        return "options"
    return "filters"


def plan(schedule: ReportSchedule, now: dt.datetime | None = None) -> dt.datetime:
    """The schedule's first occurrence after ``now``, for a new or changed schedule."""
    return next_after(schedule.cron, schedule.timezone, now or timezone.now())


# --- the tick ------------------------------------------------------------------------------


def tick(now: dt.datetime | None = None) -> list[ScheduleRun]:
    """Claim and start each enabled schedule's due occurrence; the runs this pass claimed.

    ``now`` (aware) stands for the clock: tests and ``report_export tick --now`` pass it.
    """
    now = now or timezone.now()
    due = ReportSchedule.objects.filter(enabled=True).filter(
        Q(next_run_at__lte=now) | Q(next_run_at__isnull=True)
    )
    runs = []
    for schedule in due.select_related("owner").order_by("next_run_at", "pk"):
        try:
            run = run_due(schedule, now)
        except (ValueError, KeyError) as exc:
            # A cron expression or time zone saved past the validation: the others go on.
            logger.error("Schedule %s cannot be planned: %s", schedule.pk, exc)
            continue
        if run is not None:
            runs.append(run)
    return runs


def run_due(schedule: ReportSchedule, now: dt.datetime) -> ScheduleRun | None:
    """Claim the schedule's latest due occurrence and start it; ``None``: nothing was due, or
    another ticker claimed it first."""
    seen = schedule.next_run_at
    if seen is None:
        # New, or planned by nobody yet: its first occurrence is the next one from now.
        ReportSchedule.objects.filter(pk=schedule.pk, next_run_at__isnull=True).update(
            next_run_at=plan(schedule, now)
        )
        return None
    occurrence, missed = latest_due(schedule.cron, schedule.timezone, seen, now)
    following = next_after(schedule.cron, schedule.timezone, now)
    run = claim(schedule, seen, occurrence, missed, following)
    if run is None:
        return None
    schedule.next_run_at, schedule.last_run_at = following, occurrence
    return start_run(schedule, run)


def claim(
    schedule: ReportSchedule,
    seen: dt.datetime,
    occurrence: dt.datetime,
    missed: int,
    following: dt.datetime,
) -> ScheduleRun | None:
    """The guarded claim of ``occurrence``: its run, or ``None`` if another ticker has it."""
    try:
        with transaction.atomic():
            won = ReportSchedule.objects.filter(
                pk=schedule.pk, enabled=True, next_run_at=seen
            ).update(next_run_at=following, last_run_at=occurrence, updated_at=timezone.now())
            if not won:
                return None
            return ScheduleRun.objects.create(
                schedule=schedule, occurrence=occurrence, missed=missed, outcome=Outcome.CLAIMED
            )
    except IntegrityError:
        return None  # the occurrence's run exists: claimed before, by whichever ticker


def start_run(schedule: ReportSchedule, run: ScheduleRun) -> ScheduleRun:
    """Start the claimed occurrence's export; the run records what came of it."""
    values: dict[str, Any]
    try:
        service = site.get(schedule.service)
        owner = schedule.owner
        if owner is not None and not service.has_permission(owner):
            raise PermissionError(
                f"The owner {owner.get_username()!r} may no longer read {service.name!r}."
            )
        request = parse_request(service, request_params(schedule))
        status = control.start(
            service, request, user=schedule.owner, schedule=schedule, replace=False
        )
    except PermissionError as exc:
        values = {"outcome": Outcome.FAILED, "reason": str(exc)}
    except SlotBusy as exc:
        values = {
            "outcome": Outcome.SKIPPED,
            "export_id": exc.export_id,
            "reason": f"The previous export {exc.export_id} is still active.",
        }
    except InvalidExportRequest as exc:
        details = "; ".join(f"{name}: {' '.join(m)}" for name, m in sorted(exc.errors.items()))
        values = {"outcome": Outcome.FAILED, "reason": f"{exc.message} {details}"}
    except (ReportExportError, RedisError, ConnectionError) as exc:
        values = {"outcome": Outcome.FAILED, "reason": str(exc)}
    except Exception as exc:
        # Recorded, and the tick goes on to the other schedules.
        logger.exception("Schedule %s: the export could not be started.", schedule.name)
        values = {"outcome": Outcome.FAILED, "reason": f"{type(exc).__name__}: {exc}"}
    else:
        values = {"outcome": Outcome.STARTED, "export_id": status["id"]}
    ScheduleRun.objects.filter(pk=run.pk).update(**values)
    for name, value in values.items():
        setattr(run, name, value)
    if run.outcome != Outcome.STARTED:
        logger.warning(
            "Schedule %s, occurrence %s: %s. %s",
            schedule.name,
            run.occurrence.isoformat(),
            run.outcome,
            run.reason,
        )
    return run


__all__ = ["build_request", "plan", "request_params", "schedule_errors", "tick"]
