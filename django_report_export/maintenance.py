"""Keeping exports healthy without anyone polling them: lost workers and old exports.

A running export proves it is alive with a heartbeat in its slot. One whose heartbeat is
older than ``STALE_AFTER`` is taken from its run and queued again, to continue from its last
durable checkpoint, up to ``MAX_RETRIES`` times; then it is marked Error. Status reads and
starts recover the slot they touch (``control``); ``sweep`` and RQ's failure callback
(``job_failed``) catch the others. Ended exports older than ``RETENTION_DAYS`` are deleted
with ``old_exports`` and ``delete_export`` (``manage.py report_export cleanup``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from rq.exceptions import AbandonedJobError

from django_report_export.conf import export_settings
from django_report_export.lifecycle import end_export
from django_report_export.models import ReportExport, Status
from django_report_export.processes import closing_new_connections
from django_report_export.queueing import enqueue
from django_report_export.status import (
    SlotStatus,
    StatusStore,
    export_id,
    get_store,
    is_stale,
    slot_key,
    slot_lock,
)
from django_report_export.storage import delete_export_files, delete_quietly, get_storage

logger = logging.getLogger(__name__)


def recover_lost_run(store: StatusStore, slot: str, status: SlotStatus) -> bool:
    """Take the slot's stale run from its worker; True if this call did it."""
    export = ReportExport.objects.filter(pk=export_id(status)).first()
    if export is None:
        return False
    now = timezone.now()
    lost_run = status.get("run") or ""
    if export.retries >= export_settings.MAX_RETRIES:
        error = (
            f"The worker running the export was lost; gave up after "
            f"{export.retries} continuation(s)."
        )
        values: dict[str, Any] = {
            "status": Status.ERROR,
            "error": error,
            "run": "",
            "request": "",
            "finished_at": now,
            "updated_at": now,
        }
        taken = store.transition(
            slot, values, expect_id=export.pk, expect_run=lost_run, allowed=[Status.RUNNING]
        )
        if taken.written:
            # The checkpoint stays: a retry continues from it.
            end_export(export, Status.ERROR, {"error": error, "finished_at": now})
            logger.error("Export %s: %s", export.pk, error)
        return taken.written

    processed = export.durable_processed()
    taken = store.transition(
        slot,
        {
            "status": Status.STARTING,
            "run": "",
            "request": "",
            "processed": processed,
            "rate": "",
            "updated_at": now,
        },
        expect_id=export.pk,
        expect_run=lost_run,
        allowed=[Status.RUNNING],
    )
    if not taken.written:
        return False
    # Only while the lost run still holds the row: a job queued before may have taken the
    # slot since the transition, and the row with it.
    ReportExport.objects.filter(pk=export.pk, run_token=export.run_token).update(
        status=Status.STARTING,
        run_token="",
        retries=export.retries + 1,
        processed=processed,
        updated_at=now,
    )
    export.refresh_from_db()
    logger.warning(
        "Export %s: worker lost; continuing from row %s (continuation %s of %s).",
        export.pk,
        processed,
        export.retries,
        export_settings.MAX_RETRIES,
    )
    enqueue(store, export, on_failure=Status.PAUSED)
    return True


def sweep() -> list[str]:
    """Recover every slot whose running export lost its worker; returns their export ids.

    Status reads and starts already recover the slot they touch; this catches the slots
    nobody polls. ``manage.py report_export sweep`` runs it (from cron, or with ``--every``).
    """
    store = get_store()
    recovered = []
    for slot in store.slots():
        status = store.read(slot)
        if status is not None and is_stale(status) and recover_lost_run(store, slot, status):
            recovered.append(str(status["id"]))
    return recovered


def job_failed(job: Any, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """RQ failure callback of export jobs: continue an export whose worker was lost.

    RQ calls it with ``AbandonedJobError`` when its maintenance finds a job whose worker
    stopped heartbeating; errors raised by the export itself are recorded by the job.
    """
    if exc_type is not AbandonedJobError or not job.args:
        return
    # Maintenance runs in the worker's own process, which forks the next work horses: the
    # database connections opened here must not outlive the call.
    with closing_new_connections():
        recover_abandoned(str(job.args[0]))


def recover_abandoned(export_id: str) -> None:
    export = ReportExport.objects.filter(pk=export_id).first()
    if export is None:
        return
    store = get_store()
    status = store.read(export.slot)
    if status is not None and str(status["id"]) == str(export.pk) and is_stale(status):
        recover_lost_run(store, export.slot, status)


# --- old exports ---------------------------------------------------------------------------


def old_exports(days: int) -> QuerySet[ReportExport]:
    """Ended exports that ended (or, never started, were created) over ``days`` days ago,
    oldest first."""
    cutoff = timezone.now() - dt.timedelta(days=days)
    return (
        ReportExport.objects.filter(status__in=Status.ended())
        .filter(Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff))
        .order_by("created_at")
    )


def delete_export(export: ReportExport, store: StatusStore | None = None) -> None:
    """Delete an ended export: its file and parts, its slot's status if it still shows it
    (rebuilt from the database), and its record."""
    store = store or get_store()
    storage = get_storage()
    # Under the slot's lock, so that no start claims the slot while its status goes.
    with slot_lock(store, export.slot):
        delete_quietly(storage, [export.file_name])
        delete_export_files(storage, export)
        forget_slot(store, export)
        export.delete()


def forget_slot(store: StatusStore, export: ReportExport) -> None:
    """Drop the slot's status if it still shows ``export``; it is rebuilt from the database."""
    status = store.read(export.slot)
    if status is not None and str(status.get("id")) == str(export.pk):
        store.redis.delete(slot_key(export.slot))
