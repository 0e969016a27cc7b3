"""``manage.py report_export``: exports from the shell.

    report_export start SERVICE --format csv [--fields a,b] [--compression gzip]
        [--delimiter ;] [--bom] [--decimal-separator ,] [--timezone Europe/Berlin] ...
                        [--filter key=value ...] [--user NAME] [--wait]
                        [--notify-email ADDRESS] [--since last | --from ISO --to ISO]
    report_export status SERVICE [--user NAME] [--wait] [--json]
    report_export pause|cancel SERVICE [--user NAME]
    report_export resume SERVICE [--user NAME] [--wait]
    report_export retry SERVICE [--user NAME] [--wait]
    report_export history SERVICE [--user NAME] [--limit N]
    report_export download SERVICE [-o FILE] [--id ID] [--user NAME]
    report_export cleanup [--days N] [--dry-run]
    report_export sweep [--every SECONDS]
    report_export schedules
    report_export schedule NAME --service S --format F --cron EXPR --owner USER [...]
    report_export tick [--now ISO-TIME] [--loop [--every SECONDS]]

This module parses the arguments and dispatches: the verbs are in ``management.verbs`` and
``management.housekeeping`` and ``management.scheduling``, the printing in
``management.output``. Errors are one line on stderr and an exit code
(``management.exit_codes``), never a traceback.
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from redis.exceptions import RedisError

from django_report_export import checks
from django_report_export.exceptions import ReportExportError
from django_report_export.management import housekeeping, scheduling, verbs
from django_report_export.management.exit_codes import EXIT_CODES, describe, exit_code_of

#: What each ACTION runs: a function of the command and its options, giving the exit code.
VERBS: dict[str, Callable[[BaseCommand, dict[str, Any]], int | None]] = {
    "start": verbs.start,
    "status": verbs.status,
    "pause": verbs.pause,
    "resume": verbs.resume,
    "cancel": verbs.cancel,
    "retry": verbs.retry,
    "history": verbs.history,
    "download": verbs.download,
    "cleanup": housekeeping.cleanup,
    "sweep": housekeeping.sweep,
    "schedules": scheduling.schedules,
    "schedule": scheduling.schedule,
    "tick": scheduling.tick,
}


class Command(BaseCommand):
    help = gettext_noop(
        "Start, follow, pause, resume, cancel and download exports; clean up old ones."
    )

    # ``handle`` runs this package's checks only (services, settings, storage): the whole
    # project's, templates and admin included, took half a second of every command.
    requires_system_checks: list[str] = []
    #: ``call_command(..., skip_checks=False)`` runs them as ``manage.py`` does.
    stealth_options = ("skip_checks",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # In the language active when the command is loaded (argparse needs a str).
        self.help = _(type(self).help)

    def run_from_argv(self, argv: list[str]) -> None:
        """As ``manage.py`` runs it: the process ends with the command."""
        try:
            super().run_from_argv(argv)
        finally:
            # The interpreter's last garbage collection would walk every object Django made
            # (a quarter to half a second at exit); frozen, they are left to the exit.
            gc.freeze()

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
        start.add_argument("--delimiter", help=_("CSV delimiter: , ; tab or |."))
        start.add_argument(
            "--bom",
            action=argparse.BooleanOptionalAction,
            help=_("Start a CSV with a UTF-8 byte-order mark (or not)."),
        )
        start.add_argument("--line-ending", help=_("CSV record end: lf or crlf."))
        start.add_argument("--decimal-separator", help=_("CSV decimal separator: . or ,"))
        start.add_argument("--header", help=_("CSV header row: names, labels or none."))
        start.add_argument("--timezone", help=_("Time zone of datetimes, e.g. Europe/Berlin."))
        start.add_argument(
            "--since", choices=["last"], help=_("last: the window after the last finished one.")
        )
        start.add_argument(
            "--from", dest="window_from", metavar="ISO", help=_("Window start (ISO 8601).")
        )
        start.add_argument(
            "--to", dest="window_to", metavar="ISO", help=_("Window end, excluded (ISO 8601).")
        )
        start.add_argument(
            "--notify-email",
            metavar="ADDRESS",
            help=_("Mail this address when the export ends, with the download link."),
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
        wait_options(
            service_command("retry", _("Continue the export in Error from its last checkpoint."))
        )
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
            description=_(
                "Continue exports whose worker stopped heartbeating (maintenance.sweep)."
            ),
        )
        sweep.add_argument(
            "--every", type=float, metavar="SECONDS", help=_("Repeat every SECONDS until stopped.")
        )

        sub.add_parser(
            "schedules",
            help=_("List the export schedules with their next run."),
            description=_("List the export schedules with their next and last run."),
        )
        add_schedule = sub.add_parser(
            "schedule",
            help=_("Create a schedule, or change the one of that name."),
            description=_(
                "Create an export schedule, or change the one of that name; validated as the "
                "admin validates one. It runs from its next occurrence."
            ),
        )
        add_schedule.add_argument("name", metavar="NAME")
        add_schedule.add_argument("--service", required=True)
        add_schedule.add_argument("--format", required=True)
        add_schedule.add_argument("--cron", required=True, metavar="EXPRESSION")
        add_schedule.add_argument("--timezone", default="UTC", metavar="IANA-NAME")
        add_schedule.add_argument("--owner", metavar="USERNAME", help=_("Whose export it is."))
        add_schedule.add_argument("--fields", metavar="NAME,NAME")
        add_schedule.add_argument("--compression")
        add_schedule.add_argument(
            "--option",
            action="append",
            metavar="NAME=VALUE",
            help=_("A start option, e.g. delimiter=; or since=last (repeatable)."),
        )
        add_schedule.add_argument(
            "--filter", action="append", metavar="NAME=VALUE", help=_("A filter (repeatable).")
        )
        add_schedule.add_argument(
            "--recipient", action="append", metavar="EMAIL", help=_("Mailed when it ends.")
        )
        add_schedule.add_argument("--disabled", action="store_true", help=_("Do not run it yet."))
        tick = sub.add_parser(
            "tick",
            help=_("Start the scheduled exports that are due."),
            description=_(
                "Start each enabled schedule's due occurrence, once however many tickers run; "
                "run it from cron every minute, or with --loop."
            ),
        )
        tick.add_argument(
            "--now",
            metavar="ISO-TIME",
            help=_("Act as if it were this time (tests, catching up by hand)."),
        )
        tick.add_argument(
            "--loop", action="store_true", help=_("Tick every --every seconds until stopped.")
        )
        tick.add_argument(
            "--every",
            type=float,
            default=30.0,
            metavar="SECONDS",
            help=_("Seconds between ticks with --loop (default 30)."),
        )

    # --- dispatch ------------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        verb = VERBS[action]
        if not options.get("skip_checks"):  # call_command skips them unless asked
            self.check(tags=[checks.TAG])
        try:
            code = verb(self, options)
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
