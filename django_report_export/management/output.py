"""What ``manage.py report_export`` prints: a status as lines, the progress line ``--wait``
redraws, and the history table. Pure functions of the API's status body and the records."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _

from django_report_export.models import ReportExport, Status
from django_report_export.presentation import export_status, status_body
from django_report_export.registry import ExportService

BAR_WIDTH = 30


def status_lines(
    service: ExportService, status: dict[str, Any], progress: bool = True
) -> list[str]:
    """The status of ``service``'s export; without ``progress`` (``--wait`` draws it itself)."""
    body = status_body(service, status)
    line = f"{service.name}: {body['status_name']}"
    if body["id"]:
        line += f"  id={body['id']}  format={body['format']}"
        if body["compression"]:
            line += f".{body['compression']}"
    lines = [line]
    if not body["id"]:
        return lines
    if progress:
        lines.append(f"  {progress_line(body)}")
    for key in ("started_at", "finished_at"):
        if body[key]:
            lines.append(f"  {key.replace('_', ' ')}: {body[key]}")
    if body["filters"]:
        lines.append(f"  filters: {json.dumps(body['filters'])}")
    if body["window"]:
        window = body["window"]
        lines.append(f"  window: {window['field']} in [{window['from'] or '-'}, {window['to']})")
    if body["status"] == Status.FINISHED:
        lines.append(f"  file: {body['file_size']} bytes ({body['file']})")
    if body["error"]:
        lines.append(f"  {'error' if body['status'] == Status.ERROR else 'note'}: {body['error']}")
    return lines


def progress_line(body: dict[str, Any]) -> str:
    """``[#####.....]  45.2%  4,520/10,000 rows  1,234 rows/s  ETA 0:00:05  Running``"""
    progress = float(body["progress"] or 0)
    filled = int(BAR_WIDTH * progress / 100)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    rows = f"{body['processed']:,}" + (f"/{body['total']:,}" if body["total"] is not None else "")
    parts = [f"[{bar}] {progress:5.1f}%", f"{rows} rows"]
    if body["rows_per_second"]:
        parts.append(f"{round(body['rows_per_second']):,} rows/s")
    if body["eta_seconds"] is not None:
        parts.append(f"ETA {dt.timedelta(seconds=int(body['eta_seconds']))}")
    parts.append(body["status_name"])
    return "  ".join(parts)


def history_lines(exports: Iterable[ReportExport], live: dict[str, Any]) -> list[str]:
    """The history table, a header and one line per export (``live``: the slot's status, whose
    counters are newer than its record's); no lines without exports."""
    header = (
        _("created"),
        "id",
        _("status"),
        _("format"),
        _("rows"),
        _("by"),
        _("schedule"),
        _("size"),
    )
    rows = [(*header, _("error"))]
    for export in exports:
        status = export_status(export, live)
        processed = status["processed"]
        code = int(status["status"])
        total = export.total
        rows.append(
            (
                timezone.localtime(export.created_at).strftime("%Y-%m-%d %H:%M:%S"),
                str(export.pk),
                str(Status(code).label),
                export.format + (f".{export.compression}" if export.compression else ""),
                f"{processed}/{total}" if total is not None else str(processed or 0),
                export.created_by.get_username() if export.created_by else "-",
                export.schedule.name if export.schedule else "-",
                str(export.file_size) if export.file_size is not None else "-",
                (export.error[:60] + "...") if len(export.error) > 63 else export.error,
            )
        )
    if len(rows) == 1:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
