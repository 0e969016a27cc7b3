"""Incremental windows: an export of the rows whose ``incremental_field`` is in ``[from, to)``.

A service that declares ``incremental_field`` (a ``DateTimeField`` path) takes, at start,
``since=last`` or ``from``/``to`` (ISO 8601). ``parse_window`` checks them (problems by
parameter name, as ``parse_request`` reports every other); ``resolve_window`` fixes the bounds
once, when the export starts: ``to`` is the instant of the start unless given, and
``since=last`` begins where the last Finished window of the service and slot ended (or at
``from``, if later). The bounds
are stored on the export, and ``window_filter`` applies them to every read of it (generic and
fast-path readers, shards, continuations and retries alike), so rows written while it runs
belong to the next window. Windows are half-open: ``from`` inclusive, ``to`` exclusive, so two
consecutive windows never share a row; a row whose field is NULL is in no window.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import DateTimeField, F, Max, QuerySet
from django.utils import timezone as django_timezone

from django_report_export.models import ReportExport, Status
from django_report_export.registry import ExportService, resolve_field_path

PARAMETERS = ("since", "from", "to")
#: An offset whose ``+`` a query string turned into a space: ``10:00:00 01:00``.
_SPACED_OFFSET = re.compile(r"(\d) (\d\d(:?\d\d)?)$")


@dataclass(frozen=True)
class WindowRequest:
    """What a start asks for: ``since=last``, or explicit bounds (each may be missing)."""

    since_last: bool = False
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class Window:
    """Fixed bounds of an export: ``field`` in ``[start, end)``; ``start=None``: unbounded."""

    field: str
    start: datetime | None
    end: datetime


def is_datetime_path(service: ExportService, path: str) -> bool:
    """Whether ``path`` walks from the service's model to a ``DateTimeField`` (check E032)."""
    chain = resolve_field_path(service.model, path)
    return isinstance(chain[-1], DateTimeField)


def parse_window(
    service: ExportService,
    params: Mapping[str, Sequence[str]],
    *,
    zone: zoneinfo.ZoneInfo,
    errors: dict[str, list[str]],
) -> WindowRequest | None:
    """The window a start asks for (``None``: none); problems go into ``errors``. Naive
    datetimes are read in ``zone`` (the export's ``timezone`` option)."""
    given = {name: list(params.get(name, [])) for name in PARAMETERS if params.get(name)}
    if not given:
        return None
    if not service.incremental_field:
        for name in given:
            errors[name] = [
                f"Service {service.name!r} has no incremental field, so no {name!r} window."
            ]
        return None
    values: dict[str, str] = {}
    for name, raw in given.items():
        if len(raw) > 1:
            errors[name] = [f"{name!r} may be given only once."]
        else:
            values[name] = raw[0].strip()
    if "since" in values and values["since"] != "last":
        errors["since"] = ["One of: last."]
    bounds: dict[str, datetime] = {}
    for name in ("from", "to"):
        if name in values:
            try:
                bounds[name] = parse_instant(values[name], zone)
            except ValueError as error:
                errors[name] = [str(error)]
    # Every combination the schema allows is taken (OpenAPI cannot tie one parameter to
    # another): ``since=last`` with ``from`` starts at the later of the two, and bounds that
    # leave nothing between them make an empty window.
    return WindowRequest(
        since_last="since" in values, start=bounds.get("from"), end=bounds.get("to")
    )


def parse_instant(text: str, zone: zoneinfo.ZoneInfo) -> datetime:
    """An aware UTC datetime from ISO 8601 ``text``; naive ones are read in ``zone``."""
    hint = "Give an ISO 8601 date and time, e.g. 2026-01-31T12:00:00+00:00."
    try:
        value = datetime.fromisoformat(_SPACED_OFFSET.sub(r"\1+\2", text))
    except ValueError:
        raise ValueError(f"Not an ISO 8601 date and time: {text!r}. {hint}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"Out of range: {text!r}. {hint}") from None


def resolve_window(
    service: ExportService, slot: str, request: WindowRequest | None
) -> Window | None:
    """Fix the bounds at start: ``to`` is now unless an earlier one is given; ``since=last``
    starts at the end of the last Finished window of ``service`` in ``slot`` (none yet:
    unbounded), or at ``from`` if that is later. A ``from`` at or after ``to`` is an empty
    window."""
    if request is None or not service.incremental_field:
        return None
    now = django_timezone.now()
    # A ``to`` after the start is the start: rows not written yet are in a later window.
    end = min(request.end or now, now)
    start = request.start
    if request.since_last:
        last = last_window_end(service, slot)
        if last is not None and (start is None or last > start):
            start = last
    return Window(service.incremental_field, start, end)


def last_window_end(service: ExportService, slot: str) -> datetime | None:
    """Where the last Finished window of ``service`` in ``slot`` ended (the latest ``to``);
    canceled and failed windows do not count, nor empty ones (``from`` at or after ``to``)."""
    finished = ReportExport.objects.filter(
        service=service.name,
        slot=slot,
        status=Status.FINISHED,
        window_field=service.incremental_field,
        window_to__isnull=False,
    ).exclude(window_from__gte=F("window_to"))  # an empty window holds nothing to follow
    end: datetime | None = finished.aggregate(end=Max("window_to"))["end"]
    return end


def window_values(window: Window | None) -> dict[str, Any]:
    """The ``ReportExport`` fields recording ``window``."""
    if window is None:
        return {}
    return {"window_field": window.field, "window_from": window.start, "window_to": window.end}


def window_filter(queryset: QuerySet[Any], export: ReportExport) -> QuerySet[Any]:
    """``queryset`` narrowed to the export's window (unchanged if it has none)."""
    if not export.window_field:
        return queryset
    lookups: dict[str, Any] = {f"{export.window_field}__lt": export.window_to}
    if export.window_from is not None:
        lookups[f"{export.window_field}__gte"] = export.window_from
    return queryset.filter(**lookups)
