"""Start, pause, resume, cancel and retry, and the slot's status: the operations behind the API, the
admin and the shell.

Each operation runs under a short Redis lock per slot (``status.slot_lock``), so operations
from any number of API processes are serialised, and changes the slot through
``StatusStore.transition``, so they are atomic against the worker's own transitions. A running
export is never stopped by writing its status: the operation *requests* pause or cancel and
waits (``CANCEL_TIMEOUT``) for the worker to acknowledge at its next chunk boundary, so two
workers never write one slot. What the front ends also need to build a start (``parse_request``,
``clean_keys``) comes from ``query`` and is named here too.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, cast

from django.utils import timezone

from django_report_export import signals
from django_report_export.conf import export_settings
from django_report_export.connection import get_redis
from django_report_export.documents import sheet_labels, written_labels
from django_report_export.exceptions import (
    InvalidExportRequest,
    NoExportInState,
    NotAcknowledged,
    SlotBusy,
    StatusUnavailable,
)
from django_report_export.lifecycle import clean_up, end_export
from django_report_export.maintenance import recover_lost_run
from django_report_export.models import ReportExport, Status
from django_report_export.options import defaults, with_labels
from django_report_export.query import (
    MAX_SELECTED_KEYS,
    ExportRequest,
    clean_keys,
    parse_request,
    slot_for,
    to_many_field_errors,
    writes_csv,
)
from django_report_export.queueing import enqueue
from django_report_export.registry import ExportService
from django_report_export.runs.leases import release_shards
from django_report_export.status import (
    MISSING,
    EarlyRead,
    Request,
    SlotStatus,
    StatusStore,
    export_id,
    get_store,
    is_stale,
    now_ts,
    slot_lock,
    snapshot,
)
from django_report_export.windows import resolve_window, window_values

ACK_POLL_SECONDS = 0.05


# --- reading -----------------------------------------------------------------------------


def read_status_early(service: ExportService) -> EarlyRead | None:
    """Send the read of ``service``'s status now, for ``get_status(early=...)`` to receive;
    ``None`` where the slot depends on the user, who is not known yet."""
    if export_settings.SLOT_SCOPE == "user":
        return None
    return get_store().read_early(slot_for(service))


def get_status(
    service: ExportService, user: Any = None, early: EarlyRead | None = None
) -> dict[str, Any]:
    """The slot's live status; rebuilt from the database only if Redis has lost it."""
    store = get_store()
    slot = slot_for(service, user)
    status = read_or_rebuild(store, slot, service, early)
    if is_stale(status):
        recover_lost_run(store, slot, status)
        status = read_or_rebuild(store, slot, service)
    return plain(status)


def plain(status: SlotStatus) -> dict[str, Any]:
    """``status`` as the front ends take it: the same object, typed as a plain ``dict``."""
    return cast(dict[str, Any], status)


def read_or_rebuild(
    store: StatusStore, slot: str, service: ExportService, early: EarlyRead | None = None
) -> SlotStatus:
    status = store.read(slot, early)
    if status is not None:
        return status
    latest = ReportExport.objects.latest_for_slot(slot)
    values = snapshot(latest) if latest else {"id": "", "service": service.name, "status": 0}
    if latest is not None and latest.status == Status.RUNNING:
        # Give the worker, if it lives, a full STALE_AFTER to show up in the rebuilt slot.
        values["heartbeat"] = now_ts()
    store.restore(slot, values)
    status = store.read(slot)
    if status is None:
        raise StatusUnavailable("Redis did not return a status.", service=service.name)
    return status


# --- changing ----------------------------------------------------------------------------


def start(
    service: ExportService,
    request: ExportRequest,
    user: Any = None,
    *,
    schedule: Any = None,
    replace: bool = True,
) -> dict[str, Any]:
    """Cancel whatever holds the slot, then queue a new export; returns its status.

    ``replace=False`` (a schedule's occurrence) raises ``SlotBusy`` instead of canceling an
    active export; ``schedule`` is the ``ReportSchedule`` the export is recorded under.
    """
    refused = to_many_field_errors(service, request.fields)
    if refused:
        raise InvalidExportRequest({"fields": refused}, service=service.name)
    notify_email = request.notify_email
    if request.notify == "email":
        notify_email = getattr(user, "email", "")
    if request.notify == "email" and not notify_email:
        message = "notify=email needs an email address on your account."
        raise InvalidExportRequest({"notify": [message]}, service=service.name)
    store = get_store()
    slot = slot_for(service, user)
    with slot_lock(store, slot):
        # Before the slot's export is canceled: a window refused leaves it running.
        window = resolve_window(service, slot, request.window)
        current = read_or_rebuild(store, slot, service)
        if current["status"] in Status.active() and not replace:
            raise SlotBusy(service=service.name, export_id=export_id(current))
        if current["status"] in Status.active():
            stop(store, slot, current, Request.CANCEL, reason="Canceled by a newer start.")
        elif current["status"] == Status.ERROR:
            forget_failed(export_id(current))
        owner = user if slot != service.name else None
        # Labels in the language active now, at the start.
        options = with_labels(
            request.options or defaults(),
            service.model,
            request.fields,
            labels=written_labels(service, request.fields, request.format),
        )
        if not writes_csv(request.format):
            labels = sheet_labels(service, request.fields, request.format)
            options = dataclasses.replace(options, labels=labels)
        export = ReportExport.objects.create(
            service=service.name,
            slot=slot,
            owner=owner,
            created_by=user if getattr(user, "pk", None) else None,
            format=request.format,
            compression=request.compression,
            fields=request.fields,
            filters=request.filters,
            keys=request.keys,
            shards=request.shards,
            options=options.to_json(csv=writes_csv(request.format)),
            notify_email=notify_email,
            schedule=schedule,
            status=Status.STARTING,
            **window_values(window),
        )
        claimed = store.transition(slot, snapshot(export), allowed=[Status.READY, *Status.ended()])
        if not claimed.written:
            export.delete()
            raise StatusUnavailable("The slot changed while the export was being started.")
        enqueue(store, export, on_failure=Status.ERROR)
    signals.export_started.send(sender=ReportExport, export=export)
    # The hash as written a moment ago, or, if Redis lost it since, the row's copy.
    status = store.read(slot)
    return plain(status) if status is not None else snapshot(export)


def forget_failed(failed_id: str) -> None:
    """Delete what an export in Error kept for a retry: a newer start replaces it."""
    failed = ReportExport.objects.filter(pk=failed_id, status=Status.ERROR).first()
    if failed is not None:
        clean_up(failed)
        failed.update_fields(checkpoint={})


def pause(service: ExportService, user: Any = None) -> dict[str, Any]:
    store = get_store()
    slot = slot_for(service, user)
    with slot_lock(store, slot):
        current = read_or_rebuild(store, slot, service)
        if current["status"] not in (Status.STARTING, Status.RUNNING):
            raise NoExportInState("The export is not running.", service=service.name)
        stop(store, slot, current, Request.PAUSE)
        return plain(read_or_rebuild(store, slot, service))


def resume(service: ExportService, user: Any = None) -> dict[str, Any]:
    store = get_store()
    slot = slot_for(service, user)
    with slot_lock(store, slot):
        current = read_or_rebuild(store, slot, service)
        if current["status"] != Status.PAUSED:
            raise NoExportInState("The export has not been paused.", service=service.name)
        now = timezone.now()
        result = store.transition(
            slot,
            {"status": Status.STARTING, "request": "", "error": "", "updated_at": now},
            expect_id=current["id"],
            allowed=[Status.PAUSED],
        )
        if not result.written:
            raise NoExportInState("The export has not been paused.", service=service.name)
        export = ReportExport.objects.get(pk=export_id(current))
        # A job queued before the pause may have taken the slot since the transition, and
        # written Running on the row: the row says Starting only while it still says Paused.
        resumed_row(export, Status.PAUSED, status=Status.STARTING, error="", updated_at=now)
        enqueue(store, export, on_failure=Status.PAUSED)
        return plain(read_or_rebuild(store, slot, service))


def retry(service: ExportService, user: Any = None) -> dict[str, Any]:
    """Continue the slot's export in Error from its checkpoint, with a new run."""
    store = get_store()
    slot = slot_for(service, user)
    with slot_lock(store, slot):
        current = read_or_rebuild(store, slot, service)
        failed = export_id(current) if current["status"] == Status.ERROR else ""
        export = ReportExport.objects.filter(pk=failed).first() if failed else None
        if export is None:
            raise NoExportInState("No export is in Error.", service=service.name)
        now = timezone.now()
        processed = export.durable_processed()
        values = {"status": Status.STARTING, "error": "", "finished_at": None, "updated_at": now}
        result = store.transition(
            slot,
            {**values, "request": "", "run": "", "rate": "", "processed": processed},
            expect_id=current["id"],
            allowed=[Status.ERROR],
        )
        if not result.written:
            raise NoExportInState("No export is in Error.", service=service.name)
        # A run that failed with the database away may still hold the row: its token goes
        # (unless a job queued before has taken the slot since, as in resume).
        if resumed_row(
            export, Status.ERROR, **values, run_token="", retries=0, processed=processed
        ):
            export.shard_set.update(run_token="", retries=0)
        enqueue(store, export, on_failure=Status.ERROR)
    signals.export_started.send(sender=ReportExport, export=export)
    return plain(read_or_rebuild(store, slot, service))


def resumed_row(export: ReportExport, was: int, **values: Any) -> bool:
    """Write ``values`` on the export's row while it is still in the state ``was``, the one
    the slot left; False when a run has taken the row since (it then holds it)."""
    for name, value in values.items():
        setattr(export, name, value)
    if ReportExport.objects.filter(pk=export.pk, status=was).update(**values):
        return True
    export.refresh_from_db()
    return False


def cancel(service: ExportService, user: Any = None) -> dict[str, Any]:
    store = get_store()
    slot = slot_for(service, user)
    with slot_lock(store, slot):
        current = read_or_rebuild(store, slot, service)
        if current["status"] not in Status.active():
            raise NoExportInState("The export is not running.", service=service.name)
        stop(store, slot, current, Request.CANCEL)
        return plain(read_or_rebuild(store, slot, service))


def stop(
    store: StatusStore, slot: str, current: SlotStatus, action: Request, reason: str = ""
) -> None:
    """Pause or cancel the slot's export and return once no worker writes it any more."""
    pausing = action == Request.PAUSE
    target = Status.PAUSED if pausing else Status.CANCELED
    idle_states = [Status.STARTING] if pausing else [Status.STARTING, Status.PAUSED]
    exporting = export_id(current)
    now = timezone.now()
    ended = {"finished_at": now} if target == Status.CANCELED else {}
    result = store.transition(
        slot,
        {"status": target, "request": "", "run": "", "updated_at": now, "error": reason, **ended},
        expect_id=exporting,
        allowed=idle_states,
    )
    if result.written:
        # No worker held it: the queued job, when it runs, finds the slot no longer Starting.
        finish_stop(exporting, target, reason, now)
        return
    if result.status != str(Status.RUNNING):
        return
    store.transition(slot, {"request": action.value}, expect_id=exporting, allowed=[Status.RUNNING])
    status = wait_until_stopped(store, slot, exporting)
    if status is None or status["id"] != exporting or status["status"] != Status.RUNNING:
        if reason and status is not None and status["status"] == Status.CANCELED:
            ReportExport.objects.filter(pk=exporting).update(error=reason)
        return
    if not is_stale(status):
        raise NotAcknowledged(
            f"The running export did not acknowledge {action.value} within "
            f"{export_settings.CANCEL_TIMEOUT} seconds.",
            export_id=exporting,
        )
    # Its worker is gone: nobody will acknowledge, so take the run from it.
    reason = reason or "The worker running the export was lost."
    taken = store.transition(
        slot,
        {"status": target, "request": "", "run": "", "updated_at": now, "error": reason, **ended},
        expect_id=exporting,
        expect_run=status.get("run") or "",
        allowed=[Status.RUNNING],
    )
    if taken.written:
        finish_stop(exporting, target, reason, now, lost_run=True)


def wait_until_stopped(store: StatusStore, slot: str, export_id: Any) -> SlotStatus | None:
    """The slot's status once its export left Running, or as it is after CANCEL_TIMEOUT."""
    deadline = time.monotonic() + export_settings.CANCEL_TIMEOUT
    while True:
        status = store.read(slot)
        if status is None or status["id"] != export_id or status["status"] != Status.RUNNING:
            return status
        if time.monotonic() >= deadline:
            return status
        time.sleep(ACK_POLL_SECONDS)


def finish_stop(export_id: Any, target: int, reason: str, now: Any, lost_run: bool = False) -> None:
    export = ReportExport.objects.filter(pk=export_id).first()
    if export is None:
        return
    if target == Status.PAUSED:
        values: dict[str, Any] = {"status": target, "run_token": ""}
        if lost_run:
            values["processed"] = export.durable_processed()
            release_shards(export, get_redis())
        export.update_fields(**values)
        return
    end_export(export, target, {"error": reason, "finished_at": now, "checkpoint": {}})


__all__ = [
    "MAX_SELECTED_KEYS",
    "MISSING",
    "ExportRequest",
    "cancel",
    "clean_keys",
    "get_status",
    "get_store",
    "parse_request",
    "pause",
    "read_status_early",
    "resume",
    "retry",
    "slot_for",
    "slot_lock",
    "start",
    "writes_csv",
]
