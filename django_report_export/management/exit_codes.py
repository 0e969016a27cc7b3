"""What ``manage.py report_export`` exits with, and the one line on stderr for each error."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from redis.exceptions import RedisError

from django_report_export.exceptions import (
    InvalidExportRequest,
    NoExportInState,
    StatusUnavailable,
    UnknownService,
)
from django_report_export.options import NAMES as FILE_OPTIONS

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
OPTION_NAMES = {
    "format": "--format",
    "fields": "--fields",
    "compression": "--compression",
    **{name: "--" + name.replace("_", "-") for name in FILE_OPTIONS},
    **{name: f"--{name}" for name in ("since", "from", "to")},
}


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
