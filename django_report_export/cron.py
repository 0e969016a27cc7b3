"""The occurrences of a schedule: a cron expression read on a time zone's wall clock, given
and returned as UTC instants.

``croniter`` parses the expression and steps through naive wall-clock times; each is placed in
the zone here, with ``zoneinfo``, so that the changes of daylight saving time behave as
docs/scheduled-and-incremental.md describes:

- a wall-clock time that does not exist (02:30 on the night the clocks go forward in
  Europe/Berlin) runs at the instant it maps to, the same number of minutes after the jump
  (03:30);
- a wall-clock time that happens twice (02:30 on the night they go back) runs once, at its
  first occurrence.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from croniter import croniter

UTC = dt.UTC


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone ``name``; ``ValueError`` when there is none of that name."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"Unknown time zone {name!r}.") from exc


def cron_error(expression: str) -> str:
    """Why ``expression`` is not a five-field cron expression; ``""`` if it is one."""
    if len(expression.split()) != 5:
        return "Five fields are needed: minute hour day-of-month month day-of-week."
    if not croniter.is_valid(expression):
        return f"Not a valid cron expression: {expression!r}."
    return ""


def to_utc(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The instant of the naive wall-clock time ``wall`` in ``zone``: a time that happens
    twice, its first; one that does not exist, the instant its offset before the jump gives."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def next_after(expression: str, zone_name: str, after: dt.datetime) -> dt.datetime:
    """The first occurrence strictly after the instant ``after``, in UTC."""
    zone = time_zone(zone_name)
    wall = after.astimezone(zone).replace(tzinfo=None)
    steps = croniter(expression, wall)
    while True:
        candidate = to_utc(steps.get_next(dt.datetime), zone)
        # Around a change of offset two wall-clock times can map to one instant, or the
        # instant of a later one before an earlier's: only a later instant counts.
        if candidate > after:
            return candidate


def latest_due(
    expression: str, zone_name: str, due: dt.datetime, now: dt.datetime
) -> tuple[dt.datetime, int]:
    """The latest occurrence at or before ``now``, starting from ``due`` (an occurrence at or
    before ``now``), and how many occurrences since ``due`` it passes over (missed ones;
    counted up to ``COUNT_LIMIT``)."""
    latest, missed = due, 0
    while missed < COUNT_LIMIT:
        following = next_after(expression, zone_name, latest)
        if following > now:
            return latest, missed
        latest, missed = following, missed + 1
    return max(latest, previous_at_or_before(expression, zone_name, now)), missed


#: Missed occurrences counted one by one (a month of minutes is beyond it): past it, the
#: latest is found from ``now`` backwards.
COUNT_LIMIT = 1000


def previous_at_or_before(expression: str, zone_name: str, now: dt.datetime) -> dt.datetime:
    zone = time_zone(zone_name)
    wall = now.astimezone(zone).replace(tzinfo=None) + dt.timedelta(seconds=1)
    steps = croniter(expression, wall)
    while True:
        candidate = to_utc(steps.get_prev(dt.datetime), zone)
        if candidate <= now:
            return candidate
