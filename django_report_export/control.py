"""Start, pause, resume and cancel: the operations behind the API, the admin and the shell.

Each operation runs under a short Redis lock per slot, so operations from any number of API
processes are serialised, and changes the slot through ``StatusStore.transition``, so they
are atomic against the worker's own transitions. A running export is never stopped by
writing its status: the operation *requests* pause or cancel and waits (``CANCEL_TIMEOUT``)
for the worker to acknowledge at its next chunk boundary, so two workers never write one slot.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import django_filters
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import DatabaseError
from django.utils import timezone
from redis.exceptions import RedisError
from rq import Callback

from django_report_export import signals
from django_report_export.conf import export_settings
from django_report_export.connection import get_queue, get_redis
from django_report_export.exceptions import (
    InvalidExportRequest,
    NoExportInState,
    NotAcknowledged,
    QueueUnavailable,
    StatusUnavailable,
)
from django_report_export.formats import format_names
from django_report_export.keys import key_field, key_to_json
from django_report_export.models import ReportExport, Status
from django_report_export.registry import ExportService
from django_report_export.relations import TO_MANY_HINT, to_many_reason, to_many_step
from django_report_export.shards import forget_shards, release_shards
from django_report_export.status import MISSING, EarlyRead, StatusStore, now_ts, snapshot
from django_report_export.storage import COMPRESSIONS, delete_export_files, get_storage

JOB_PATH = "django_report_export.job.run_export"
JOB_FAILED_PATH = "django_report_export.recovery.job_failed"
RESERVED_PARAMETERS = ("format", "fields", "compression")
ACK_POLL_SECONDS = 0.05
#: Most primary keys an export may be restricted to (``ExportRequest.keys``).
MAX_SELECTED_KEYS = 10_000


@dataclass
class ExportRequest:
    """Validated parameters of a start."""

    format: str
    fields: list[str]
    compression: str = ""
    filters: dict[str, Any] = field(default_factory=dict)
    #: Primary keys to restrict the export to (from ``clean_keys``); ``None``: every row.
    keys: list[Any] | None = None
    #: Key-range shards to split the export into (``None``: the service's, else automatic).
    shards: int | None = None


def get_store() -> StatusStore:
    return StatusStore(get_redis())


def slot_for(service: ExportService, user: Any = None) -> str:
    if export_settings.SLOT_SCOPE == "user" and user is not None and user.pk is not None:
        return f"{service.name}:user:{user.pk}"
    return service.name


def parse_request(service: ExportService, params: Mapping[str, Sequence[str]]) -> ExportRequest:
    """Validate query parameters of a start; every problem is reported by parameter name."""
    errors: dict[str, list[str]] = {}
    filter_names = service.get_filter_names()
    for name in params:
        if name not in RESERVED_PARAMETERS and name not in filter_names:
            errors[name] = [f"Unknown query parameter {name!r} for service {service.name!r}."]

    def single(name: str) -> str:
        values = list(params.get(name, []))
        if len(values) > 1:
            errors[name] = [f"{name!r} may be given only once."]
        return values[0].strip() if values else ""

    export_format = single("format")
    allowed_formats = [f for f in service.formats if f in format_names()]
    if not export_format:
        errors["format"] = [f"This parameter is required; one of: {', '.join(allowed_formats)}."]
    elif export_format not in allowed_formats:
        errors["format"] = [
            f"Format {export_format!r} is not supported by service {service.name!r}; "
            f"one of: {', '.join(allowed_formats)}."
        ]

    fields = list(service.fields)
    requested = single("fields")
    if requested:
        fields = [name.strip() for name in requested.split(",")]
        unknown = [name for name in fields if name and name not in service.fields]
        if unknown:
            errors["fields"] = [
                f"Unknown field(s) {', '.join(map(repr, unknown))}; "
                f"choose from: {', '.join(service.fields)}."
            ]
        elif "" in fields:
            errors["fields"] = ["An empty field name: separate the names by single commas."]
        elif len(set(fields)) != len(fields):
            errors["fields"] = ["A field is listed more than once."]
    if "fields" not in errors:
        refused = to_many_field_errors(service, fields)
        if refused:
            errors["fields"] = refused

    compression = single("compression").lower()
    if compression in ("none", "identity"):
        compression = ""
    if compression and compression not in COMPRESSIONS:
        errors["compression"] = [f"Unknown compression {compression!r}; one of: gzip, none."]

    filters = {
        name: values[0] if len(values) == 1 else list(values)
        for name, values in params.items()
        if name in filter_names
    }
    if service.filterset_class is not None and filters:
        base_filters = service.filterset_class.base_filters
        for name, value in filters.items():
            if isinstance(value, list) and not isinstance(
                base_filters[name], django_filters.MultipleChoiceFilter
            ):
                errors[name] = [f"{name!r} may be given only once."]
        filterset = service.filterset_class(
            data=filter_data(filters), queryset=service.get_queryset()
        )
        if not filterset.is_valid():
            for name, messages in filterset.errors.items():
                errors[name] = [str(message) for message in messages]
        elif not errors:
            check_filters_run(filterset.qs, filters, errors)
    if errors:
        raise InvalidExportRequest(errors, service=service.name)
    return ExportRequest(export_format, fields, compression, filters)


def to_many_field_errors(service: ExportService, fields: Iterable[str]) -> list[str]:
    """Why each of ``fields`` that crosses a to-many relation cannot be exported (check E008)."""
    errors = []
    for path in fields:
        try:
            step = to_many_step(service.model, path)
        except FieldDoesNotExist:
            continue  # check E003 names it; the export fails as it always has
        if step is not None:
            errors.append(f"Field {path!r} {to_many_reason(service, step)} {TO_MANY_HINT}")
    return errors


def clean_keys(service: ExportService, keys: Iterable[Any]) -> list[Any]:
    """Validate primary keys of the service's model into a list of their JSON forms.

    The keys come from the admin's selection; each is converted by the model's primary key
    field, so a value that is not a key of that model is rejected, never passed on as a lookup.
    """
    model = service.model
    cleaned: set[Any] = set()
    invalid: list[str] = []
    for raw in keys:
        try:
            value = key_field(model).to_python(raw)
        except ValidationError:
            value = None
        if value is None or isinstance(value, bool):
            invalid.append(repr(raw))
            continue
        cleaned.add(value)
    errors: list[str] = []
    if invalid:
        errors.append(f"Not a primary key of {model.__name__}: {', '.join(invalid[:5])}.")
    if len(cleaned) > MAX_SELECTED_KEYS:
        errors.append(f"At most {MAX_SELECTED_KEYS} rows can be selected; got {len(cleaned)}.")
    if errors:
        raise InvalidExportRequest({"keys": errors}, service=service.name)
    return [key_to_json(model, key) for key in sorted(cleaned)]


def check_filters_run(queryset: Any, filters: Mapping[str, Any], errors: dict) -> None:
    """Run the filtered query once, so values the form accepts but the database cannot hold
    (a date before year 1 in UTC, an integer beyond 64 bits) are a 400, not a failed export."""
    try:
        queryset.using(export_settings.DATABASE_ALIAS).exists()
    except (OverflowError, ValueError, DatabaseError) as exc:
        message = f"A filter value is out of the database's range: {exc}"
        for name in filters:
            errors[name] = [message]


def filter_data(filters: Mapping[str, Any]) -> Any:
    from django.http import QueryDict

    data = QueryDict(mutable=True)
    for name, value in filters.items():
        data.setlist(name, value if isinstance(value, list) else [value])
    return data


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
        from django_report_export.recovery import recover_lost_run

        recover_lost_run(store, slot, status)
        status = read_or_rebuild(store, slot, service)
    return status


def read_or_rebuild(
    store: StatusStore, slot: str, service: ExportService, early: EarlyRead | None = None
) -> dict[str, Any]:
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


def is_stale(status: Mapping[str, Any]) -> bool:
    if status["status"] != Status.RUNNING:
        return False
    heartbeat = status.get("heartbeat") or 0.0
    return now_ts() - heartbeat > export_settings.STALE_AFTER


# --- changing ----------------------------------------------------------------------------


@contextlib.contextmanager
def slot_lock(store: StatusStore, slot: str) -> Iterator[None]:
    timeout = export_settings.CANCEL_TIMEOUT
    try:
        lock = store.lock(slot, timeout=timeout * 2 + 30, wait=timeout + 5)
        acquired = lock.acquire()
    except RedisError as exc:
        raise StatusUnavailable(f"Redis cannot be reached: {exc}") from exc
    if not acquired:
        raise StatusUnavailable("Another operation on this export did not finish in time.")
    try:
        yield
    finally:
        with contextlib.suppress(RedisError):
            lock.release()


def start(service: ExportService, request: ExportRequest, user: Any = None) -> dict[str, Any]:
    """Cancel whatever holds the slot, then queue a new export; returns its status."""
    refused = to_many_field_errors(service, request.fields)
    if refused:
        raise InvalidExportRequest({"fields": refused}, service=service.name)
    store = get_store()
    slot = slot_for(service, user)
    with slot_lock(store, slot):
        current = read_or_rebuild(store, slot, service)
        if current["status"] in Status.active():
            stop(store, slot, current, "cancel", reason="Canceled by a newer start.")
        owner = user if slot != service.name else None
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
            status=Status.STARTING,
        )
        claimed = store.transition(slot, snapshot(export), allowed=[Status.READY, *Status.ended()])
        if not claimed.written:
            export.delete()
            raise StatusUnavailable("The slot changed while the export was being started.")
        enqueue(store, export, on_failure=Status.ERROR)
    signals.export_started.send(sender=ReportExport, export=export)
    return store.read(slot) or snapshot(export)


def pause(service: ExportService, user: Any = None) -> dict[str, Any]:
    store = get_store()
    slot = slot_for(service, user)
    with slot_lock(store, slot):
        current = read_or_rebuild(store, slot, service)
        if current["status"] not in (Status.STARTING, Status.RUNNING):
            raise NoExportInState("The export is not running.", service=service.name)
        stop(store, slot, current, "pause")
        return read_or_rebuild(store, slot, service)


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
        export = ReportExport.objects.get(pk=current["id"])
        export.update_fields(status=Status.STARTING, error="", updated_at=now)
        enqueue(store, export, on_failure=Status.PAUSED)
        return read_or_rebuild(store, slot, service)


def cancel(service: ExportService, user: Any = None) -> dict[str, Any]:
    store = get_store()
    slot = slot_for(service, user)
    with slot_lock(store, slot):
        current = read_or_rebuild(store, slot, service)
        if current["status"] not in Status.active():
            raise NoExportInState("The export is not running.", service=service.name)
        stop(store, slot, current, "cancel")
        return read_or_rebuild(store, slot, service)


def stop(
    store: StatusStore, slot: str, current: Mapping[str, Any], action: str, reason: str = ""
) -> None:
    """Pause or cancel the slot's export and return once no worker writes it any more."""
    target = Status.PAUSED if action == "pause" else Status.CANCELED
    idle_states = [Status.STARTING] if action == "pause" else [Status.STARTING, Status.PAUSED]
    export_id = current["id"]
    now = timezone.now()
    ended = {"finished_at": now} if target == Status.CANCELED else {}
    result = store.transition(
        slot,
        {"status": target, "request": "", "run": "", "updated_at": now, "error": reason, **ended},
        expect_id=export_id,
        allowed=idle_states,
    )
    if result.written:
        # No worker held it: the queued job, when it runs, finds the slot no longer Starting.
        finish_stop(export_id, target, reason, now)
        return
    if result.status != str(Status.RUNNING):
        return
    store.transition(slot, {"request": action}, expect_id=export_id, allowed=[Status.RUNNING])
    status = wait_until_stopped(store, slot, export_id)
    if status is None or status["id"] != export_id or status["status"] != Status.RUNNING:
        if reason and status is not None and status["status"] == Status.CANCELED:
            ReportExport.objects.filter(pk=export_id).update(error=reason)
        return
    if not is_stale(status):
        raise NotAcknowledged(
            f"The running export did not acknowledge {action} within "
            f"{export_settings.CANCEL_TIMEOUT} seconds.",
            export_id=export_id,
        )
    # Its worker is gone: nobody will acknowledge, so take the run from it.
    reason = reason or "The worker running the export was lost."
    taken = store.transition(
        slot,
        {"status": target, "request": "", "run": "", "updated_at": now, "error": reason, **ended},
        expect_id=export_id,
        expect_run=status.get("run") or "",
        allowed=[Status.RUNNING],
    )
    if taken.written:
        finish_stop(export_id, target, reason, now, lost_run=True)


def wait_until_stopped(store: StatusStore, slot: str, export_id: Any) -> dict[str, Any] | None:
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
    export.update_fields(status=target, run_token="", error=reason, finished_at=now, checkpoint={})
    forget_shards(export, get_redis())
    delete_export_files(get_storage(), export)
    signals.export_canceled.send(sender=ReportExport, export=export)


def enqueue(store: StatusStore, export: ReportExport, on_failure: int) -> None:
    """Queue a run of ``export``; on failure put the slot in ``on_failure`` and raise."""
    try:
        get_queue().enqueue_call(
            JOB_PATH,
            args=(str(export.pk),),
            timeout=export_settings.JOB_TIMEOUT,
            job_id=f"report-export-{export.pk}-{uuid.uuid4().hex[:8]}",
            description=f"report export {export.service} {export.pk}",
            # RQ's maintenance reports a job whose worker died (AbandonedJobError) here.
            on_failure=Callback(JOB_FAILED_PATH),
        )
    except (RedisError, OSError) as exc:
        message = f"The export job could not be queued: {exc}"
        now = timezone.now()
        values: dict[str, Any] = {"status": on_failure, "error": message, "updated_at": now}
        if on_failure == Status.ERROR:
            values["finished_at"] = now
        with contextlib.suppress(StatusUnavailable):
            store.transition(export.slot, values, expect_id=export.pk, allowed=[Status.STARTING])
        export.update_fields(**values)
        raise QueueUnavailable(message, service=export.service, export_id=export.pk) from exc


__all__ = [
    "MISSING",
    "ExportRequest",
    "cancel",
    "clean_keys",
    "get_status",
    "parse_request",
    "pause",
    "resume",
    "start",
]
