"""The service verbs of ``manage.py report_export``: start, status, pause, resume, cancel,
retry, history and download, and following an export with ``--wait``.

Each verb takes the command (for its output streams) and the parsed options, goes through
``control`` as the API does, and returns an exit code or ``None`` for success.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.utils.translation import gettext as _

from django_report_export import control
from django_report_export.conf import export_settings
from django_report_export.download import open_file
from django_report_export.exceptions import NoExportInState
from django_report_export.management.exit_codes import (
    EXIT_CANCELED,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PAUSED,
    EXIT_USAGE,
)
from django_report_export.management.output import history_lines, progress_line, status_lines
from django_report_export.models import ReportExport, Status
from django_report_export.options import NAMES as OPTION_NAMES
from django_report_export.presentation import status_body
from django_report_export.query import slot_for
from django_report_export.registry import ExportService, site
from django_report_export.status import get_store

Options = dict[str, Any]


def service_of(options: Options) -> ExportService:
    return site.get(options["service"])


def user_of(options: Options) -> Any:
    """The ``--user``'s user; ``None`` without one, which ``SLOT_SCOPE = "user"`` refuses."""
    username = options.get("user")
    if not username:
        if export_settings.SLOT_SCOPE == "user":
            raise CommandError(
                _("--user is required when REPORT_EXPORT['SLOT_SCOPE'] is 'user'."),
                returncode=EXIT_USAGE,
            )
        return None
    model = get_user_model()
    try:
        return model._default_manager.get_by_natural_key(username)
    except model.DoesNotExist:
        raise CommandError(
            _("Unknown user %(username)r.") % {"username": username}, returncode=EXIT_USAGE
        ) from None


def show(
    command: BaseCommand, service: ExportService, status: dict[str, Any], progress: bool = True
) -> None:
    for line in status_lines(service, status, progress):
        command.stdout.write(line)


def start(command: BaseCommand, options: Options) -> int | None:
    service = service_of(options)
    user = user_of(options)
    params: dict[str, list[str]] = {"format": [options["format"]]}
    if options["fields"] is not None:
        params["fields"] = [options["fields"]]
    if options["compression"] is not None:
        params["compression"] = [options["compression"]]
    for name in OPTION_NAMES:
        if options[name] is not None:
            value = options[name]
            params[name] = [("true" if value else "false") if isinstance(value, bool) else value]
    for name, option in (("since", "since"), ("from", "window_from"), ("to", "window_to")):
        if options.get(option) is not None:
            params[name] = [options[option]]
    for item in options["filter"]:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(
                _("--filter %(item)r: expected KEY=VALUE.") % {"item": item},
                returncode=EXIT_USAGE,
            )
        if key.strip() in params:
            raise CommandError(
                _("--filter %(key)s: use --%(key)s instead.") % {"key": key.strip()},
                returncode=EXIT_USAGE,
            )
        params.setdefault(key.strip(), []).append(value)
    request = control.parse_request(service, params)
    if options["shards"] is not None:
        if options["shards"] < 1:
            raise CommandError(_("--shards must be 1 or more."), returncode=EXIT_USAGE)
        request.shards = options["shards"]
    if options.get("notify_email"):
        try:
            validate_email(options["notify_email"])
        except ValidationError:
            message = _("--notify-email: not an email address.")
            raise CommandError(message, returncode=EXIT_USAGE) from None
        request.notify_email = options["notify_email"]
    current = control.start(service, request, user=user)
    show(command, service, current, progress=not options["wait"])
    return wait(command, service, user, current, options) if options["wait"] else None


def status(command: BaseCommand, options: Options) -> int | None:
    service = service_of(options)
    user = user_of(options)
    current = control.get_status(service, user)
    if options["json"]:
        command.stdout.write(json_body(service, current))
    else:
        show(command, service, current)
    if options["wait"] and current.get("id"):
        return wait(command, service, user, current, options)
    return None


def json_body(service: ExportService, status: dict[str, Any]) -> str:
    return json.dumps(status_body(service, status), indent=2)


def pause(command: BaseCommand, options: Options) -> None:
    service = service_of(options)
    show(command, service, control.pause(service, user_of(options)))


def resume(command: BaseCommand, options: Options) -> int | None:
    service = service_of(options)
    user = user_of(options)
    current = control.resume(service, user)
    show(command, service, current, progress=not options["wait"])
    return wait(command, service, user, current, options) if options["wait"] else None


def retry(command: BaseCommand, options: Options) -> int | None:
    service = service_of(options)
    user = user_of(options)
    current = control.retry(service, user)
    show(command, service, current, progress=not options["wait"])
    return wait(command, service, user, current, options) if options["wait"] else None


def cancel(command: BaseCommand, options: Options) -> None:
    service = service_of(options)
    show(command, service, control.cancel(service, user_of(options)))


def history(command: BaseCommand, options: Options) -> None:
    service = service_of(options)
    slot = control.slot_for(service, user_of(options))
    live = control.get_status(service, user_of(options))
    exports = (
        ReportExport.objects.for_slot(slot)
        .select_related("created_by", "schedule")
        .order_by("-created_at")[: max(options["limit"], 0)]
    )
    lines = history_lines(exports, live)
    if not lines:
        command.stdout.write(_("No exports of %(service)s yet.") % {"service": service.name})
    for line in lines:
        command.stdout.write(line)


def download(command: BaseCommand, options: Options) -> None:
    service = service_of(options)
    user = user_of(options)
    slot = control.slot_for(service, user)
    if options["id"]:
        try:
            export_id: Any = uuid.UUID(options["id"])
        except ValueError:
            raise CommandError(
                _("--id %(id)r is not an export id.") % {"id": options["id"]},
                returncode=EXIT_USAGE,
            ) from None
    else:
        current = control.get_status(service, user)
        if current["status"] != Status.FINISHED:
            raise NoExportInState(_("No finished export to download."), service=service.name)
        export_id = current["id"]
    export = ReportExport.objects.filter(pk=export_id, slot=slot, status=Status.FINISHED).first()
    if export is None or not export.file_name:
        raise NoExportInState(_("No finished export to download."), service=service.name)
    output = options["output"] or os.path.basename(export.file_name)
    with open_file(export) as source:
        if output == "-":
            shutil.copyfileobj(source, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        try:
            with open(output, "wb") as target:
                shutil.copyfileobj(source, target)
        except OSError as exc:
            raise CommandError(
                _("Cannot write %(output)s: %(error)s") % {"output": output, "error": exc},
                returncode=EXIT_ERROR,
            ) from exc
    command.stdout.write(
        _("Wrote %(output)s (%(size)s bytes, %(rows)s rows).")
        % {"output": output, "size": export.file_size, "rows": export.processed}
    )


def wait(
    command: BaseCommand,
    service: ExportService,
    user: Any,
    status: dict[str, Any],
    options: Options,
) -> int:
    """Follow the export until it ends; its exit code. The progress is read every
    ``--interval`` seconds, and at once when the export's status changes."""
    interval = max(float(options.get("interval") or 1.0), 0.05)
    with get_store().changes(slot_for(service, user)) as wait_for_change:
        # Read again once listening: a change before it would not wake the wait.
        status = control.get_status(service, user)
        return follow(command, service, user, status, interval, wait_for_change)


def follow(
    command: BaseCommand,
    service: ExportService,
    user: Any,
    status: dict[str, Any],
    interval: float,
    wait_for_change: Callable[[float], None],
) -> int:
    export_id = status["id"]
    tty = command.stdout.isatty()
    last_line = ""
    last_print = 0.0
    while True:
        body = status_body(service, status, name_file=False)
        if str(body["id"]) != str(export_id):
            finish_line(command, tty, last_line)
            command.stderr.write(
                _("The export was replaced by a newer one (%(id)s).") % {"id": body["id"]}
            )
            return EXIT_CANCELED
        line = progress_line(body)
        now = time.monotonic()
        if tty:
            command.stdout.write(f"\r{line}\033[K", ending="")
            command.stdout.flush()
        elif line != last_line and (now - last_print >= 5 or body["status"] not in (1, 2)):
            command.stdout.write(line)
            last_print = now
        last_line = line
        code = body["status"]
        if code not in (Status.STARTING, Status.RUNNING):
            finish_line(command, tty, last_line)
            return outcome(command, service, body)
        wait_for_change(interval)
        status = control.get_status(service, user)


def finish_line(command: BaseCommand, tty: bool, line: str) -> None:
    if tty and line:
        command.stdout.write("")


def outcome(command: BaseCommand, service: ExportService, body: dict[str, Any]) -> int:
    code = body["status"]
    if code == Status.FINISHED:
        command.stdout.write(
            _(
                "Finished: %(rows)s rows, %(size)s bytes. "
                "Download it with: manage.py report_export download %(service)s"
            )
            % {"rows": body["processed"], "size": body["file_size"], "service": service.name}
        )
        return EXIT_OK
    if code == Status.PAUSED:
        paused = _("Paused at row %(row)s.") % {"row": body["processed"]}
        command.stderr.write(f"{paused} {body['error'] or ''}".strip())
        return EXIT_PAUSED
    if code == Status.CANCELED:
        command.stderr.write(f"{_('Canceled.')} {body['error'] or ''}".strip())
        return EXIT_CANCELED
    command.stderr.write(
        _("Error: %(error)s") % {"error": body["error"] or _("the export failed.")}
    )
    return EXIT_FAILED
