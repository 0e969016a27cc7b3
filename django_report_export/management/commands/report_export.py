"""``manage.py report_export``: exports from the shell.

    report_export start SERVICE --format csv [--fields a,b] [--compression gzip]
                        [--filter key=value ...] [--user NAME] [--wait]
    report_export status SERVICE [--user NAME] [--wait] [--json]
    report_export pause|cancel SERVICE [--user NAME]
    report_export resume SERVICE [--user NAME] [--wait]
    report_export history SERVICE [--user NAME] [--limit N]
    report_export download SERVICE [-o FILE] [--id ID] [--user NAME]
    report_export cleanup [--days N] [--dry-run]
    report_export sweep [--every SECONDS]

Every operation goes through ``control``, as the API's do. Errors are one line on stderr and
an exit code (``EXIT_CODES``), never a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop
from redis.exceptions import RedisError

from django_report_export import control, maintenance
from django_report_export.api.serializers import status_body
from django_report_export.conf import export_settings
from django_report_export.download import open_file
from django_report_export.exceptions import (
    InvalidExportRequest,
    NoExportInState,
    ReportExportError,
    StatusUnavailable,
    UnknownService,
)
from django_report_export.models import ReportExport, Status
from django_report_export.registry import ExportService, site
from django_report_export.status import StatusStore, slot_key
from django_report_export.storage import delete_export_files, delete_quietly, get_storage

EXIT_OK = 0
#: Unexpected failure.
EXIT_ERROR = 1
#: Bad usage: unknown service or user, invalid parameter (argparse uses 2 as well).
EXIT_USAGE = 2
#: Redis or the queue cannot be reached, or a running export did not acknowledge in time.
EXIT_UNAVAILABLE = 3
#: No export in a state that allows it (pause with nothing running, nothing to download).
EXIT_NOT_FOUND = 4
#: ``--wait``: the export ended Canceled (or was replaced by a newer start).
EXIT_CANCELED = 5
#: ``--wait``: the export ended Error.
EXIT_FAILED = 6
#: ``--wait``: the export was paused; resume it, then ``status --wait`` again.
EXIT_PAUSED = 7

EXIT_CODES: dict[int, Any] = {
    EXIT_OK: gettext_lazy("success (with --wait: the export Finished)"),
    EXIT_ERROR: gettext_lazy("unexpected error"),
    EXIT_USAGE: gettext_lazy("unknown service or user, or an invalid parameter"),
    EXIT_UNAVAILABLE: gettext_lazy(
        "Redis or the queue unreachable, or the export did not stop in time"
    ),
    EXIT_NOT_FOUND: gettext_lazy("no export in a state that allows the operation"),
    EXIT_CANCELED: gettext_lazy("--wait: the export was canceled"),
    EXIT_FAILED: gettext_lazy("--wait: the export failed (Error)"),
    EXIT_PAUSED: gettext_lazy("--wait: the export was paused"),
}

#: Command-line spelling of each export parameter, to name it in error messages.
OPTION_NAMES = {"format": "--format", "fields": "--fields", "compression": "--compression"}
BAR_WIDTH = 30


def exit_code_of(exc: Exception) -> int:
    if isinstance(exc, UnknownService | InvalidExportRequest):
        return EXIT_USAGE
    if isinstance(exc, NoExportInState):
        return EXIT_NOT_FOUND
    if isinstance(exc, StatusUnavailable | RedisError | ConnectionError):
        return EXIT_UNAVAILABLE
    return EXIT_ERROR


def describe(exc: Exception) -> str:
    if isinstance(exc, InvalidExportRequest):
        lines = [_("Invalid parameters:")]
        for name, messages in exc.errors.items():
            option = OPTION_NAMES.get(name, f"--filter {name}")
            lines += [f"  {option}: {message}" for message in messages]
        return "\n".join(lines)
    if isinstance(exc, RedisError):
        return _("Redis cannot be reached: %(error)s") % {"error": exc}
    return str(exc)


class Command(BaseCommand):
    help = gettext_noop(
        "Start, follow, pause, resume, cancel and download exports; clean up old ones."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # In the language active when the command is loaded (argparse needs a str).
        self.help = _(type(self).help)

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

        def service_command(name: str, help_text: str) -> CommandParser:
            command = sub.add_parser(name, help=help_text, description=help_text)
            command.add_argument("service", metavar="SERVICE", help=_("Service name, e.g. order."))
            command.add_argument(
                "--user",
                metavar="USERNAME",
                help=_("Whose slot (needed when SLOT_SCOPE is 'user'); recorded as starter."),
            )
            return command

        def wait_options(command: CommandParser) -> None:
            command.add_argument(
                "--wait",
                action="store_true",
                help=_("Show a progress bar until the export ends; the exit code tells how."),
            )
            command.add_argument(
                "--interval",
                type=float,
                default=1.0,
                metavar="SECONDS",
                help=_("Seconds between status reads while waiting (default 1)."),
            )

        start = service_command("start", _("Start an export (an active one is canceled first)."))
        start.add_argument("--format", required=True, help=_("One of the service's formats."))
        start.add_argument("--fields", help=_("Comma-separated subset of the service's fields."))
        start.add_argument("--compression", help=_("gzip or none."))
        start.add_argument(
            "--shards",
            type=int,
            metavar="K",
            help=_(
                "Split the export into K key ranges run by parallel jobs (1: never; default: "
                "the service's shards, else by SHARD_ROWS)."
            ),
        )
        start.add_argument(
            "--filter",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=_("A filter of the service; repeat for more."),
        )
        wait_options(start)

        status = service_command("status", _("Show the status of the service's export."))
        status.add_argument("--json", action="store_true", help=_("Print the API's status body."))
        wait_options(status)

        service_command("pause", _("Pause the running export."))
        wait_options(service_command("resume", _("Resume the paused export.")))
        service_command("cancel", _("Cancel the export."))

        history = service_command("history", _("List past exports of the service, newest first."))
        history.add_argument("--limit", type=int, default=20, help=_("How many (default 20)."))

        download = service_command("download", _("Write the finished export's file."))
        download.add_argument(
            "-o", "--output", metavar="FILE", help=_("Where to write it ('-' for stdout).")
        )
        download.add_argument("--id", help=_("A finished export of the history; default: current."))

        cleanup = sub.add_parser(
            "cleanup",
            help=_("Delete exports (records and files) older than RETENTION_DAYS."),
            description=_(
                "Delete ended exports (records and files) older than RETENTION_DAYS. "
                "Exports that are starting, running or paused are kept."
            ),
        )
        cleanup.add_argument("--days", type=int, help=_("Age in days (default: RETENTION_DAYS)."))
        cleanup.add_argument("--dry-run", action="store_true", help=_("Only list what would go."))

        sweep = sub.add_parser(
            "sweep",
            help=_("Continue exports whose worker was lost."),
            description=_("Continue exports whose worker stopped heartbeating (recovery.sweep)."),
        )
        sweep.add_argument(
            "--every", type=float, metavar="SECONDS", help=_("Repeat every SECONDS until stopped.")
        )

    # --- dispatch ------------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        handler: Callable[[dict[str, Any]], int | None] = getattr(self, f"do_{action}")
        try:
            code = handler(options)
        except CommandError:
            raise
        except (ReportExportError, RedisError, ConnectionError) as exc:
            raise CommandError(describe(exc), returncode=exit_code_of(exc)) from exc
        except KeyboardInterrupt:
            raise CommandError(
                _("Interrupted; an export that was running goes on."), returncode=130
            ) from None
        if code:
            raise CommandError(
                str(EXIT_CODES.get(code, _("failed"))).capitalize() + ".", returncode=code
            )

    # --- helpers -------------------------------------------------------------------------

    def service(self, options: dict[str, Any]) -> ExportService:
        return site.get(options["service"])

    def user(self, options: dict[str, Any]) -> Any:
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

    def show(self, service: ExportService, status: dict[str, Any], progress: bool = True) -> None:
        body = status_body(service, status)
        line = f"{service.name}: {body['status_name']}"
        if body["id"]:
            line += f"  id={body['id']}  format={body['format']}"
            if body["compression"]:
                line += f".{body['compression']}"
        self.stdout.write(line)
        if not body["id"]:
            return
        if progress:  # --wait draws it itself
            self.stdout.write(f"  {progress_line(body)}")
        for key in ("started_at", "finished_at"):
            if body[key]:
                self.stdout.write(f"  {key.replace('_', ' ')}: {body[key]}")
        if body["filters"]:
            self.stdout.write(f"  filters: {json.dumps(body['filters'])}")
        if body["status"] == Status.FINISHED:
            self.stdout.write(f"  file: {body['file_size']} bytes ({body['file']})")
        if body["error"]:
            self.stdout.write(f"  {'error' if body['status'] == Status.ERROR else 'note'}: "
                              f"{body['error']}")  # fmt: skip

    # --- service commands ----------------------------------------------------------------

    def do_start(self, options: dict[str, Any]) -> int | None:
        service = self.service(options)
        user = self.user(options)
        params: dict[str, list[str]] = {"format": [options["format"]]}
        if options["fields"] is not None:
            params["fields"] = [options["fields"]]
        if options["compression"] is not None:
            params["compression"] = [options["compression"]]
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
        status = control.start(service, request, user=user)
        self.show(service, status, progress=not options["wait"])
        return self.wait(service, user, status, options) if options["wait"] else None

    def do_status(self, options: dict[str, Any]) -> int | None:
        service = self.service(options)
        user = self.user(options)
        status = control.get_status(service, user)
        if options["json"]:
            self.stdout.write(json.dumps(status_body(service, status), indent=2))
        else:
            self.show(service, status)
        if options["wait"] and status.get("id"):
            return self.wait(service, user, status, options)
        return None

    def do_pause(self, options: dict[str, Any]) -> None:
        service = self.service(options)
        self.show(service, control.pause(service, self.user(options)))

    def do_resume(self, options: dict[str, Any]) -> int | None:
        service = self.service(options)
        user = self.user(options)
        status = control.resume(service, user)
        self.show(service, status, progress=not options["wait"])
        return self.wait(service, user, status, options) if options["wait"] else None

    def do_cancel(self, options: dict[str, Any]) -> None:
        service = self.service(options)
        self.show(service, control.cancel(service, self.user(options)))

    def do_history(self, options: dict[str, Any]) -> None:
        service = self.service(options)
        slot = control.slot_for(service, self.user(options))
        live = control.get_status(service, self.user(options))
        exports = (
            ReportExport.objects.for_slot(slot)
            .select_related("created_by")
            .order_by("-created_at")[: max(options["limit"], 0)]
        )
        header = (_("created"), "id", _("status"), _("format"), _("rows"), _("by"), _("size"))
        rows = [(*header, _("error"))]
        for export in exports:
            is_live = str(live.get("id")) == str(export.pk)
            processed = live["processed"] if is_live else export.processed
            code = int(live["status"]) if is_live else export.status
            total = export.total
            rows.append(
                (
                    timezone.localtime(export.created_at).strftime("%Y-%m-%d %H:%M:%S"),
                    str(export.pk),
                    str(Status(code).label),
                    export.format + (f".{export.compression}" if export.compression else ""),
                    f"{processed}/{total}" if total is not None else str(processed or 0),
                    export.created_by.get_username() if export.created_by else "-",
                    str(export.file_size) if export.file_size is not None else "-",
                    (export.error[:60] + "...") if len(export.error) > 63 else export.error,
                )
            )
        if len(rows) == 1:
            self.stdout.write(_("No exports of %(service)s yet.") % {"service": service.name})
            return
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))

    def do_download(self, options: dict[str, Any]) -> None:
        service = self.service(options)
        user = self.user(options)
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
            status = control.get_status(service, user)
            if status["status"] != Status.FINISHED:
                raise NoExportInState(_("No finished export to download."), service=service.name)
            export_id = status["id"]
        export = ReportExport.objects.filter(
            pk=export_id, slot=slot, status=Status.FINISHED
        ).first()
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
        self.stdout.write(
            _("Wrote %(output)s (%(size)s bytes, %(rows)s rows).")
            % {"output": output, "size": export.file_size, "rows": export.processed}
        )

    # --- waiting -------------------------------------------------------------------------

    def wait(
        self, service: ExportService, user: Any, status: dict[str, Any], options: dict[str, Any]
    ) -> int:
        """Follow the export until it ends; its exit code."""
        export_id = status["id"]
        interval = max(float(options.get("interval") or 1.0), 0.05)
        tty = self.stdout.isatty()
        last_line = ""
        last_print = 0.0
        while True:
            body = status_body(service, status)
            if str(body["id"]) != str(export_id):
                self.finish_line(tty, last_line)
                self.stderr.write(
                    _("The export was replaced by a newer one (%(id)s).") % {"id": body["id"]}
                )
                return EXIT_CANCELED
            line = progress_line(body)
            now = time.monotonic()
            if tty:
                self.stdout.write(f"\r{line}\033[K", ending="")
                self.stdout.flush()
            elif line != last_line and (now - last_print >= 5 or body["status"] not in (1, 2)):
                self.stdout.write(line)
                last_print = now
            last_line = line
            code = body["status"]
            if code not in (Status.STARTING, Status.RUNNING):
                self.finish_line(tty, last_line)
                return self.outcome(service, body)
            time.sleep(interval)
            status = control.get_status(service, user)

    def finish_line(self, tty: bool, line: str) -> None:
        if tty and line:
            self.stdout.write("")

    def outcome(self, service: ExportService, body: dict[str, Any]) -> int:
        code = body["status"]
        if code == Status.FINISHED:
            self.stdout.write(
                _(
                    "Finished: %(rows)s rows, %(size)s bytes. "
                    "Download it with: manage.py report_export download %(service)s"
                )
                % {"rows": body["processed"], "size": body["file_size"], "service": service.name}
            )
            return EXIT_OK
        if code == Status.PAUSED:
            paused = _("Paused at row %(row)s.") % {"row": body["processed"]}
            self.stderr.write(f"{paused} {body['error'] or ''}".strip())
            return EXIT_PAUSED
        if code == Status.CANCELED:
            self.stderr.write(f"{_('Canceled.')} {body['error'] or ''}".strip())
            return EXIT_CANCELED
        self.stderr.write(
            _("Error: %(error)s") % {"error": body["error"] or _("the export failed.")}
        )
        return EXIT_FAILED

    # --- maintenance ---------------------------------------------------------------------

    def do_cleanup(self, options: dict[str, Any]) -> None:
        days = options["days"] if options["days"] is not None else export_settings.RETENTION_DAYS
        if days < 0:
            raise CommandError(_("--days must be 0 or more."), returncode=EXIT_USAGE)
        cutoff = timezone.now() - dt.timedelta(days=days)
        old = (
            ReportExport.objects.filter(status__in=Status.ended())
            .filter(Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff))
            .order_by("created_at")
        )
        storage = get_storage()
        store = control.get_store()
        count = size = 0
        verb = _("Would delete") if options["dry_run"] else _("Deleted")
        for export in old.iterator():
            count += 1
            size += export.file_size or 0
            label = (
                f"{export.service} {export.pk} ({Status(export.status).label}, "
                f"{export.file_name or _('no file')})"
            )
            if options["dry_run"]:
                self.stdout.write(f"{verb} {label}")
                continue
            # Under the slot's lock, so that no start claims the slot while its status goes.
            with control.slot_lock(store, export.slot):
                delete_quietly(storage, [export.file_name])
                delete_export_files(storage, export)
                forget_slot(store, export)
                export.delete()
            if options["verbosity"] >= 2:
                self.stdout.write(f"{verb} {label}")
        self.stdout.write(
            _("%(verb)s %(count)s export(s) older than %(days)s day(s), %(size)s bytes of files.")
            % {"verb": verb, "count": count, "days": days, "size": size}
        )

    def do_sweep(self, options: dict[str, Any]) -> None:
        every = options["every"]
        while True:
            try:
                recovered = maintenance.sweep()
            except (StatusUnavailable, RedisError) as exc:
                if every is None:
                    raise
                retrying = _("%(error)s; retrying.") % {"error": describe(exc)}
                self.stderr.write(f"{timezone.now():%H:%M:%S} {retrying}")
            else:
                for export_id in recovered:
                    self.stdout.write(
                        _("Continued export %(id)s (its worker was lost).") % {"id": export_id}
                    )
                if every is None or options["verbosity"] >= 2:
                    self.stdout.write(
                        _("Swept: %(count)s export(s) continued.") % {"count": len(recovered)}
                    )
            if every is None:
                return
            time.sleep(max(every, 0.1))


def forget_slot(store: StatusStore, export: ReportExport) -> None:
    """Drop the slot's status if it still shows ``export``; it is rebuilt from the database."""
    status = store.read(export.slot)
    if status is not None and str(status.get("id")) == str(export.pk):
        store.redis.delete(slot_key(export.slot))


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
