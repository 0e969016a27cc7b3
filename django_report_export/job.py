"""The RQ job: export one ``ReportExport`` in keyset chunks, checkpointing as it goes.

``run_export`` receives only the export's id. It takes the slot (Starting -> Running) under a
fresh run token, then loops: read ``CHUNK_SIZE`` rows with ``pk > last key ORDER BY pk``, see
whether the progress report of the chunk before found a pause or cancel request, write the
rows, and report progress and heartbeat to Redis (answered while the next chunk is read).
Every ``CHECKPOINT_INTERVAL`` seconds, and on pause, the bytes written so far are made durable
in storage (``storage.PartSequence``) and the last key is saved in the database, so another
worker can continue. When no rows are left the parts are published as one file.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections, router
from django.db.models import QuerySet
from django.utils import timezone

from django_report_export import signals
from django_report_export.conf import export_settings
from django_report_export.connection import get_redis
from django_report_export.exceptions import ExportCanceled, ReportExportError, StatusUnavailable
from django_report_export.formats import get_writer_class
from django_report_export.formats.base import FormatWriter
from django_report_export.keys import key_from_json, key_to_json
from django_report_export.models import ReportExport, Status
from django_report_export.processes import discard_inherited_connections
from django_report_export.readers import Chunk, ChunkReader, get_reader
from django_report_export.registry import ExportService, site
from django_report_export.relations import one_row_per_record
from django_report_export.shards import forget_shards, plan
from django_report_export.status import StatusStore, now_ts, snapshot
from django_report_export.storage import (
    PartSequence,
    Piece,
    checkpoint_parts,
    delete_export_files,
    delete_quietly,
    final_name,
    get_storage,
    publish,
)

logger = logging.getLogger(__name__)

#: Tries of a chunk read or checkpoint write on a dropped database connection (reopened
#: between tries) before the export fails.
DB_ATTEMPTS = 3

T = TypeVar("T")


def run_export(export_id: str) -> None:
    discard_inherited_connections()
    export = ReportExport.objects.filter(pk=export_id).first()
    if export is None:
        logger.warning("Export %s no longer exists; nothing to run.", export_id)
        return
    ExportRun(export).execute()


def export_queryset(service: ExportService, export: ReportExport) -> QuerySet[Any]:
    """The service's queryset with the export's filters (and keys), on the export database."""
    from django_report_export.control import filter_data

    queryset = service.get_queryset()
    if service.filterset_class is not None and export.filters:
        filterset = service.filterset_class(data=filter_data(export.filters), queryset=queryset)
        if not filterset.is_valid():
            raise ReportExportError(
                f"The export's filters are no longer valid: {dict(filterset.errors)}",
                service=export.service,
                export_id=export.pk,
            )
        queryset = filterset.qs
    # A filter (or the service's own queryset) across a to-many relation joins a row per
    # related object: the export reads each record once all the same.
    queryset = one_row_per_record(queryset)
    if export.keys is not None:
        # The admin action's selected rows: a list of keys validated by control.clean_keys.
        model = service.model
        queryset = queryset.filter(pk__in=[key_from_json(model, key) for key in export.keys])
    return queryset.using(export_settings.DATABASE_ALIAS).order_by("pk")


class Superseded(ExportCanceled):
    """The slot was given to another run (this worker was taken for lost, or it was reset)."""


class Heartbeat(threading.Thread):
    """Calls ``beat`` every ``HEARTBEAT_INTERVAL`` seconds, even inside a long chunk."""

    def __init__(self, name: str, beat: Callable[[], Any]) -> None:
        super().__init__(name=name, daemon=True)
        self.beat = beat
        self.stopped = threading.Event()

    def run(self) -> None:
        interval = export_settings.HEARTBEAT_INTERVAL
        while not self.stopped.wait(interval):
            with contextlib.suppress(StatusUnavailable):
                self.beat()

    def stop(self) -> None:
        self.stopped.set()


class ProgressReports:
    """Sends a chunk's progress report from a thread of its own, so Redis answers while the
    job reads the next chunk; the answer is taken before that chunk is written.

    With Redis a network round trip away, a report per chunk would otherwise add that round
    trip to every chunk's time.
    """

    def __init__(self, name: str) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.pending: Future[str] | None = None

    def send(self, report: Callable[[], str]) -> None:
        self.pending = self.executor.submit(report)

    def answer(self) -> str:
        """The request (``""``, ``"pause"`` or ``"cancel"``) the last report found, or its error."""
        pending, self.pending = self.pending, None
        return pending.result() if pending is not None else ""

    def __enter__(self) -> ProgressReports:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.executor.shutdown(wait=True)


def reconnecting(export_id: Any, action: Callable[[], T], *, alias: str, what: str) -> T:
    """``action()``, retried on a reopened connection if the database dropped it.

    Only for idempotent work: a chunk read, or a checkpoint write guarded by the run token.
    """
    for attempt in range(1, DB_ATTEMPTS + 1):
        try:
            return action()
        except (OperationalError, InterfaceError) as exc:
            if attempt == DB_ATTEMPTS:
                raise
            logger.warning(
                "Export %s: %s failed (%s); reconnecting, attempt %s of %s.",
                export_id,
                what,
                exc,
                attempt + 1,
                DB_ATTEMPTS,
            )
            connections[alias].close()
            time.sleep(attempt)
    raise AssertionError("unreachable")


class ExportRun:
    """One run of an export on one worker, from taking the slot to pause, cancel or finish."""

    def __init__(self, export: ReportExport) -> None:
        self.export = export
        self.service = site.get(export.service)
        self.store = StatusStore(get_redis())
        self.storage = get_storage()
        self.slot = export.slot
        self.token = uuid.uuid4().hex
        self.writer: FormatWriter = get_writer_class(export.format)(export.service, export.fields)
        self.parts = PartSequence(self.storage, export, self.token)
        self.processed = 0
        self.last_key: Any = None
        self.run_started = time.monotonic()
        self.run_processed = 0

    # --- lifecycle -----------------------------------------------------------------------

    def execute(self) -> None:
        if not self.begin():
            return
        logger.info(
            "Export %s run %s began at row %s on %s.",
            self.export.pk,
            self.token,
            self.processed,
            self.slot,
        )
        heartbeat = Heartbeat(f"report-export-heartbeat-{self.export.pk}", self.beat)
        heartbeat.start()
        try:
            self.export_rows()
        except Superseded:
            logger.warning("Export %s: run %s was superseded.", self.export.pk, self.token)
            self.parts.discard_unsaved()
        except Exception as exc:
            self.fail(exc)
            raise
        finally:
            heartbeat.stop()
            self.parts.close()
            logger.info(
                "Export %s run %s ended at row %s on %s.",
                self.export.pk,
                self.token,
                self.processed,
                self.slot,
            )

    def beat(self) -> None:
        self.store.transition(
            self.slot,
            {"heartbeat": now_ts()},
            expect_id=self.export.pk,
            expect_run=self.token,
            allowed=[Status.RUNNING],
        )

    def begin(self) -> bool:
        """Take the slot from Starting to Running under this run's token."""
        export = self.export
        now = timezone.now()
        started_at = export.started_at or now
        values = {
            "status": Status.RUNNING,
            "run": self.token,
            "request": "",
            "heartbeat": now_ts(),
            "started_at": started_at,
            "updated_at": now,
        }
        taken = self.store.transition(
            self.slot, values, expect_id=export.pk, allowed=[Status.STARTING]
        )
        if taken.missing:
            self.store.restore(self.slot, snapshot(export))
            taken = self.store.transition(
                self.slot, values, expect_id=export.pk, allowed=[Status.STARTING]
            )
        if not taken.written:
            logger.info("Export %s is no longer Starting (%s); not run.", export.pk, taken.status)
            return False
        ReportExport.objects.filter(pk=export.pk).update(
            status=Status.RUNNING, run_token=self.token, started_at=started_at, updated_at=now
        )
        # Read the checkpoint only now: a run that lost the slot can no longer move it.
        export.refresh_from_db()
        checkpoint = export.checkpoint or {}
        self.parts.resume(checkpoint_parts(checkpoint))
        self.processed = checkpoint.get("processed", 0)
        self.writer.resume_state(checkpoint.get("writer"))
        self.last_key = key_from_json(self.service.model, checkpoint.get("last_key"))
        return True

    def export_rows(self) -> None:
        queryset = export_queryset(self.service, self.export)
        alias = export_settings.DATABASE_ALIAS
        if self.export.total is None:
            total = self.reconnecting(queryset.count, alias=alias, what="counting the rows")
            self.export.update_fields(total=total)
        shards = self.reconnecting(
            lambda: plan(self.export, self.service, queryset, self.writer, self.export.total or 0),
            alias=alias,
            what="planning the shards",
        )
        if shards:
            from django_report_export.sharded import ShardedRun

            ShardedRun(self, shards).execute()
            return
        if self.processed == 0 and not self.parts.parts:
            self.parts.write(self.writer.header())
        reader = self.reconnecting(
            lambda: get_reader(queryset, self.export.fields, self.writer),
            alias=alias,
            what="preparing the reader",
        )
        try:
            self.export_chunks(reader)
        finally:
            reader.close()

    def export_chunks(self, reader: ChunkReader) -> None:
        chunk_size = export_settings.CHUNK_SIZE
        last_checkpoint = time.monotonic()
        with ProgressReports(f"report-export-progress-{self.export.pk}") as reports:
            while True:
                chunk = self.read_chunk(reader, chunk_size)
                # The answer to the progress report of the chunk before: a pause or cancel
                # asked by then stops here, before this chunk is written.
                try:
                    request = reports.answer()
                except StatusUnavailable as exc:
                    self.pause(error=f"Paused: Redis could not be reached ({exc}).")
                    return
                if request == "cancel":
                    self.cancel()
                    return
                if request == "pause":
                    self.pause()
                    return
                if chunk.count:
                    self.parts.write(chunk.data)
                    self.processed += chunk.count
                    self.run_processed += chunk.count
                    self.last_key = chunk.last_key
                if chunk.count < chunk_size:
                    self.parts.write(self.writer.footer(empty=self.processed == 0))
                    self.finish()
                    return
                if time.monotonic() - last_checkpoint >= export_settings.CHECKPOINT_INTERVAL:
                    self.save_checkpoint()
                    last_checkpoint = time.monotonic()
                reports.send(self.report_progress)

    # --- steps ---------------------------------------------------------------------------

    def read_chunk(self, reader: ChunkReader, chunk_size: int) -> Chunk:
        """The next chunk; a dropped database connection is reopened and the read retried."""
        return self.reconnecting(
            lambda: reader.read(self.last_key, chunk_size, first=self.processed == 0),
            alias=export_settings.DATABASE_ALIAS,
            what=f"reading after key {self.last_key!r}",
        )

    def reconnecting(self, action: Callable[[], T], *, alias: str, what: str) -> T:
        return reconnecting(self.export.pk, action, alias=alias, what=what)

    def rate(self) -> float:
        elapsed = time.monotonic() - self.run_started
        return round(self.run_processed / elapsed, 1) if elapsed > 0 else 0.0

    def report_progress(self) -> str:
        values = {
            "processed": self.processed,
            "total": self.export.total,
            "rate": self.rate(),
            "heartbeat": now_ts(),
            "updated_at": timezone.now(),
        }
        result = self.store.transition(
            self.slot,
            values,
            expect_id=self.export.pk,
            expect_run=self.token,
            allowed=[Status.RUNNING],
        )
        if result.missing:
            # Redis lost the slot (flushed or restarted) while this run held it: put it back.
            self.store.restore(self.slot, {**snapshot(self.export), **self.live_values(), **values})
            return ""
        if not result.written:
            raise Superseded(export_id=self.export.pk)
        return result.request

    def live_values(self) -> dict[str, Any]:
        return {"status": Status.RUNNING, "run": self.token, "processed": self.processed}

    def checkpoint(self) -> dict[str, Any]:
        last_key = key_to_json(self.service.model, self.last_key)
        checkpoint = {"last_key": last_key, **self.parts.checkpoint(), "processed": self.processed}
        state = self.writer.checkpoint_state(self.processed)
        return checkpoint if state is None else {**checkpoint, "writer": state}

    def save_checkpoint(self, **values: Any) -> None:
        """Make the rows written so far durable; a superseded run cannot do it."""
        self.parts.flush()
        values.setdefault("updated_at", timezone.now())
        mine = ReportExport.objects.filter(pk=self.export.pk, run_token=self.token)
        values.update(checkpoint=self.checkpoint(), processed=self.processed)
        saved = self.reconnecting(
            lambda: mine.update(**values),
            alias=router.db_for_write(ReportExport),
            what="saving the checkpoint",
        )
        if not saved:
            raise Superseded(export_id=self.export.pk)
        self.parts.mark_saved()

    def pause(self, error: str = "") -> None:
        self.save_checkpoint(status=Status.PAUSED, run_token="", error=error)
        try:
            self.store_end_state(Status.PAUSED, {"error": error, "rate": ""}, allow_missing=True)
        except StatusUnavailable:
            # The database says Paused; the slot is rebuilt from it once Redis answers again.
            logger.warning("Export %s: paused with Redis unreachable.", self.export.pk)
        logger.info("Export %s paused at row %s.", self.export.pk, self.processed)

    def owns_export(self) -> bool:
        return ReportExport.objects.filter(
            pk=self.export.pk, run_token=self.token, status=Status.RUNNING
        ).exists()

    def cancel(self) -> None:
        now = timezone.now()
        canceled = ReportExport.objects.filter(pk=self.export.pk, run_token=self.token).update(
            status=Status.CANCELED, run_token="", checkpoint={}, finished_at=now, updated_at=now
        )
        if not canceled:
            raise Superseded(export_id=self.export.pk)
        self.export.refresh_from_db()
        delete_export_files(self.storage, self.export)
        self.parts.delete_all()
        self.store_end_state(Status.CANCELED, {"finished_at": now})
        signals.export_canceled.send(sender=ReportExport, export=self.export)

    def finish(self, pieces: list[Piece] | None = None) -> None:
        """Publish the file, from this run's parts or the given ``pieces`` (a sharded export).

        Only a run that still owns the export publishes, under a name of its own, and the file
        counts once the guarded update records it: a run that lost the export meanwhile
        deletes its own file, never the one another run recorded.
        """
        self.parts.flush()
        if not self.owns_export():
            raise Superseded(export_id=self.export.pk)
        name, size = publish(
            self.storage,
            self.parts.parts if pieces is None else pieces,
            final_name(self.export, self.writer.extension, self.token),
            self.export.compression,
        )
        now = timezone.now()
        done = ReportExport.objects.filter(
            pk=self.export.pk, run_token=self.token, status=Status.RUNNING
        ).update(
            status=Status.FINISHED,
            run_token="",
            file_name=name,
            file_size=size,
            processed=self.processed,
            total=self.processed,
            checkpoint={},
            finished_at=now,
            updated_at=now,
            error="",
        )
        if not done:
            delete_quietly(self.storage, [name])
            raise Superseded(export_id=self.export.pk)
        self.export.refresh_from_db()
        delete_export_files(self.storage, self.export, keep=name)
        self.parts.delete_all()
        self.store_end_state(
            Status.FINISHED,
            {
                "processed": self.processed,
                "total": self.processed,
                "file_size": size,
                "finished_at": now,
                "rate": self.rate(),
            },
            allow_missing=True,
        )
        signals.export_finished.send(sender=ReportExport, export=self.export)
        logger.info("Export %s finished: %s rows, %s bytes.", self.export.pk, self.processed, size)

    def fail(self, exc: BaseException) -> None:
        now = timezone.now()
        error = f"{type(exc).__name__}: {exc}"
        logger.exception("Export %s failed.", self.export.pk)
        owned: bool | None = None  # unknown while the database does not answer
        connections[DEFAULT_DB_ALIAS].close_if_unusable_or_obsolete()
        try:
            owned = bool(
                ReportExport.objects.filter(pk=self.export.pk, run_token=self.token).update(
                    status=Status.ERROR, run_token="", error=error, finished_at=now, updated_at=now
                )
            )
            self.export.refresh_from_db()
        except Exception:
            logger.exception("Export %s: the failure could not be recorded.", self.export.pk)
        self.parts.discard_unsaved()
        if owned is False:
            # Another run owns the export now: its files, status and signals are that run's.
            logger.warning("Export %s: run %s failed after losing it.", self.export.pk, self.token)
            return
        if owned:
            delete_export_files(self.storage, self.export)
            forget_shards(self.export, self.store.redis)
        try:
            self.store_end_state(Status.ERROR, {"error": error, "finished_at": now})
        except StatusUnavailable:
            logger.warning("Export %s: Redis unreachable to record the error.", self.export.pk)
        signals.export_failed.send(sender=ReportExport, export=self.export)

    def store_end_state(
        self, status: int, values: dict[str, Any], allow_missing: bool = False
    ) -> None:
        values = {
            "status": status,
            "run": "",
            "request": "",
            "processed": self.processed,
            "updated_at": timezone.now(),
            **values,
        }
        result = self.store.transition(
            self.slot,
            values,
            expect_id=self.export.pk,
            expect_run=self.token,
            allowed=[Status.RUNNING],
        )
        if result.missing and allow_missing:
            self.store.restore(self.slot, {**snapshot(self.export), **values})
