"""The maintenance verbs of ``manage.py report_export``: ``cleanup`` (old exports, their files
and slots) and ``sweep`` (continue exports whose worker was lost)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from django_report_export import maintenance
from django_report_export.conf import export_settings
from django_report_export.exceptions import StatusUnavailable
from django_report_export.management.exit_codes import EXIT_USAGE, describe
from django_report_export.models import Status
from django_report_export.status import get_store


def cleanup(command: BaseCommand, options: dict[str, Any]) -> None:
    days = options["days"] if options["days"] is not None else export_settings.RETENTION_DAYS
    if days < 0:
        raise CommandError(_("--days must be 0 or more."), returncode=EXIT_USAGE)
    old = maintenance.old_exports(days)
    store = get_store()
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
            command.stdout.write(f"{verb} {label}")
            continue
        maintenance.delete_export(export, store)
        if options["verbosity"] >= 2:
            command.stdout.write(f"{verb} {label}")
    command.stdout.write(
        _("%(verb)s %(count)s export(s) older than %(days)s day(s), %(size)s bytes of files.")
        % {"verb": verb, "count": count, "days": days, "size": size}
    )


def sweep(command: BaseCommand, options: dict[str, Any]) -> None:
    every = options["every"]
    while True:
        try:
            recovered = maintenance.sweep()
        except (StatusUnavailable, RedisError) as exc:
            if every is None:
                raise
            retrying = _("%(error)s; retrying.") % {"error": describe(exc)}
            command.stderr.write(f"{timezone.now():%H:%M:%S} {retrying}")
        else:
            for export_id in recovered:
                command.stdout.write(
                    _("Continued export %(id)s (its worker was lost).") % {"id": export_id}
                )
            if every is None or options["verbosity"] >= 2:
                command.stdout.write(
                    _("Swept: %(count)s export(s) continued.") % {"count": len(recovered)}
                )
        if every is None:
            return
        time.sleep(max(every, 0.1))
