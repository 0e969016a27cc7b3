"""How the ``ReportExport`` admin shows an export: texts for its numbers and times, and the
HTML of its progress bar, live fields and download link (the markup progress.js updates)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from django_report_export.models import ReportExport, Status

EMPTY = "—"


def states_attr(states: tuple[int, ...]) -> str:
    return ",".join(str(int(state)) for state in states)


def format_eta(seconds: Any) -> str:
    return str(dt.timedelta(seconds=int(seconds))) if seconds is not None else EMPTY


def format_rows(body: dict[str, Any]) -> str:
    total = body["total"]
    return f"{body['processed']:,} / {total:,}" if total is not None else f"{body['processed']:,}"


def format_rate(body: dict[str, Any]) -> str:
    rate = body["rows_per_second"]
    return str(_("%(rate)s rows/s") % {"rate": f"{round(rate):,}"}) if rate else EMPTY


def format_time(value: dt.datetime | None) -> str:
    """A time in the current time zone, as progress.js writes it too."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else EMPTY


def format_size(size: Any) -> str:
    if size is None:
        return EMPTY
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)  # pragma: no cover


def field_html(export: ReportExport, field: str, text: str) -> str:
    return format_html(
        '<span data-rex-export="{}" data-rex-field="{}">{}</span>', export.pk, field, text
    )


def progress_bar(body: dict[str, Any], poll_url: str | None, large: bool = False) -> str:
    """The bar; with ``poll_url`` it carries what progress.js needs to keep it live."""
    progress = body["progress"]
    poll = (
        format_html(' data-rex-poll="{}" data-rex-status="{}"', poll_url, body["status"])
        if poll_url
        else ""
    )
    return format_html(
        '<div class="rex-progress{}" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
        'aria-valuenow="{}" data-rex-export="{}" data-rex-field="progress"{}>'
        '<div class="rex-progress-fill rex-progress-{}" style="width: {}%"></div>'
        '<span class="rex-progress-label">{}%</span></div>',
        " rex-progress-large" if large else "",
        localize_number(progress),
        body["id"] or "",
        poll,
        body["status"],
        localize_number(progress),
        localize_number(progress),
    )


def localize_number(value: float) -> str:
    """A percentage for HTML attributes and CSS: always a dot, never a thousands separator."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return text if text else "0"


def download_link(export: ReportExport, body: dict[str, Any], url: str) -> str:
    hidden = "" if body["status"] == Status.FINISHED else " hidden"
    return format_html(
        '<a class="rex-download" href="{}" data-rex-export="{}" data-rex-states="{}"{}>{}</a>',
        url,
        export.pk,
        int(Status.FINISHED),
        hidden,
        _("Download"),
    )
