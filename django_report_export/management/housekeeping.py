"""The maintenance verbs of ``manage.py report_export``: ``cleanup`` (old exports, their files
and slots) and ``sweep`` (continue exports whose worker was lost)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from django_report_export import control, maintenance
from django_report_export.conf import export_settings
from django_report_export.exceptions import StatusUnavailable
from django_report_export.management.exit_codes import EXIT_USAGE, describe
from django_report_export.models import ReportExport, Status
from django_report_export.status import StatusStore, slot_key
from django_report_export.storage import delete_export_files, delete_quietly, get_storage


def cleanup(command: BaseCommand, options: dict[str, Any]) -> None:
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
            command.stdout.write(f"{verb} {label}")
            continue
        # Under the slot's lock, so that no start claims the slot while its status goes.
        with control.slot_lock(store, export.slot):
            delete_quietly(storage, [export.file_name])
            delete_export_files(storage, export)
            forget_slot(store, export)
            export.delete()
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


def forget_slot(store: StatusStore, export: ReportExport) -> None:
    """Drop the slot's status if it still shows ``export``; it is rebuilt from the database."""
    status = store.read(export.slot)
    if status is not None and str(status.get("id")) == str(export.pk):
        store.redis.delete(slot_key(export.slot))
