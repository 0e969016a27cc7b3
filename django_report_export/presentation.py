"""The bodies every front end shows of an export: the status body of SPEC §4 and the history
entry, built here once for the API, the admin and the ``report_export`` command."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.utils import translation

from django_report_export.conf import export_settings
from django_report_export.links import endpoint_path
from django_report_export.models import ReportExport, Status
from django_report_export.registry import ExportService
from django_report_export.status import snapshot


def contract_status_names() -> dict[int, str]:
    """The status names of SPEC §3 ("Ready" ... "Error"): English in every language, since
    clients compare them; the admin shows the translated ``Status`` labels instead."""
    with translation.override(None):
        return {int(value): str(label) for value, label in Status.choices}


STATUS_NAMES = contract_status_names()


def status_body(
    service: ExportService,
    status: Mapping[str, Any],
    request: Any = None,
    download_url: str | None = None,
    *,
    name_file: bool = True,
) -> dict[str, Any]:
    """The status body of SPEC §4 from a slot status (Redis) or an export snapshot; without
    ``name_file``, its ``file`` stays ``None`` (the URL is reversed in the project's URLconf,
    which a command that does not show it should not take a third of a second to import)."""
    code = int(status.get("status") or Status.READY)
    processed = int(status.get("processed") or 0)
    total = status.get("total")
    rate = status.get("rate") if code == Status.RUNNING else None
    if code == Status.FINISHED:
        progress = 100.0
    elif total:
        # Below 100 until Finished: a total may be the planner's estimate (counting.py).
        progress = min(99.9, round(processed * 100 / total, 1))
    else:
        progress = 0.0
    eta = None
    if code == Status.RUNNING and rate and total is not None:
        eta = max(0, round((total - processed) / rate))
    file_url = expires_at = None
    if code == Status.FINISHED:
        expires_at = expiry(status.get("finished_at"))
        if name_file:
            file_url = download_url or endpoint_path("report-download", service.name)
        if file_url and request is not None:
            file_url = request.build_absolute_uri(file_url)
    return {
        "service": service.name,
        "id": str(status["id"]) if status.get("id") else None,
        "status": code,
        "status_name": STATUS_NAMES[code],
        "format": status.get("format") or None,
        "compression": status.get("compression") or None,
        "filters": status.get("filters") if status.get("id") else None,
        "fields": status.get("fields") if status.get("id") else None,
        "options": status.get("options") if status.get("id") else None,
        "window": status.get("window") if status.get("id") else None,
        "processed": processed,
        "total": total,
        "progress": progress,
        "rows_per_second": rate,
        "eta_seconds": eta,
        "started_at": _iso(status.get("started_at")),
        "finished_at": _iso(status.get("finished_at")),
        "updated_at": _iso(status.get("updated_at")),
        "file": file_url,
        "file_size": status.get("file_size") if code == Status.FINISHED else None,
        "sha256": (status.get("sha256") or None) if code == Status.FINISHED else None,
        "expires_at": expires_at,
        "error": status.get("error") or None,
    }


def history_body(
    service: ExportService,
    export: ReportExport,
    request: Any,
    live: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An export as history lists it; ``live`` (the slot's status) stands in for its row."""
    status = export_status(export, live)
    url = None
    if int(status["status"]) == Status.FINISHED:
        url = f"{endpoint_path('report-download', service.name)}?id={export.pk}"
    body = status_body(service, status, request, download_url=url)
    body["created_at"] = _iso(export.created_at)
    body["created_by"] = export.created_by.get_username() if export.created_by else None
    body["reader"] = export.reader or None
    body["schedule"] = export.schedule.name if export.schedule else None
    return body


def export_status(export: ReportExport, live: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The status of ``export``: the slot's live status ``live`` when it is this export's
    (its counters are newer than the row's), else the row's."""
    if live and str(live.get("id")) == str(export.pk):
        return live
    return snapshot(export)


def expiry(finished_at: Any) -> str | None:
    """When the cleanup command removes a file finished at ``finished_at``: ``RETENTION_DAYS``
    later (``maintenance.old_exports`` deletes by the same rule)."""
    if not finished_at:
        return None
    ended = (
        finished_at
        if isinstance(finished_at, dt.datetime)
        else dt.datetime.fromisoformat(finished_at)
    )
    return (ended + dt.timedelta(days=export_settings.RETENTION_DAYS)).isoformat()


def _iso(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else value.isoformat()
