"""The export's own RQ job: one ``ReportExport``, from taking its slot to its end.

``run_export`` receives only the export's id. It takes the slot (Starting -> Running) under a
fresh run token and reads the checkpoint only then. An export that ``plan`` splits becomes a
sharded run (``runs.sharded``); any other is exported here, in keyset chunks, each chunk's
progress report answered while the next is read, and published as one file at the end.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import QuerySet
from django.utils import timezone

from django_report_export.connection import get_redis
from django_report_export.counting import count_rows
from django_report_export.exceptions import StatusUnavailable
from django_report_export.lifecycle import (
    announce,
    end_export,
    end_row,
    keep_for_retry,
    show_run_end,
)
from django_report_export.models import ReportExport, Status
from django_report_export.processes import discard_inherited_connections
from django_report_export.query import export_queryset
from django_report_export.runs.base import (
    ChunkedRun,
    Heartbeat,
    Outcome,
    ProgressReports,
    Superseded,
)
from django_report_export.runs.plan import plan
from django_report_export.runs.sharded import ShardedRun
from django_report_export.status import Request, StatusStore, now_ts, snapshot
from django_report_export.storage import Piece, delete_quietly, final_name, publish

logger = logging.getLogger(__name__)


def run_export(export_id: str) -> None:
    """RQ job: run the export ``export_id``."""
    discard_inherited_connections()
    export = ReportExport.objects.filter(pk=export_id).first()
    if export is None:
        logger.warning("Export %s no longer exists; nothing to run.", export_id)
        return
    ExportRun(export).execute()


class ExportRun(ChunkedRun):
    """One run of an export on one worker, from taking the slot to pause, cancel or finish."""

    def __init__(self, export: ReportExport) -> None:
        super().__init__(export, uuid.uuid4().hex)
        self.store = StatusStore(get_redis())
        self.slot = export.slot
        self.run_started = time.monotonic()
        self.run_processed = 0
        self.reports: ProgressReports | None = None

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
        self.resume_from(export.checkpoint or {})
        return True

    def export_rows(self) -> None:
        queryset = export_queryset(self.service, self.export)
        if self.export.total is None:
            total = self.reconnecting(lambda: count_rows(queryset), what="counting the rows")
            self.export.update_fields(total=total)
        shards = self.reconnecting(
            lambda: plan(self.export, self.service, queryset, self.writer, self.export.total or 0),
            what="planning the shards",
        )
        if shards:
            ShardedRun(self, shards).execute()
            return
        self.export_unsharded(queryset)

    def export_unsharded(self, queryset: QuerySet[Any]) -> None:
        if self.processed == 0 and not self.parts.parts:
            self.parts.write(self.writer.header())
        with ProgressReports(f"report-export-progress-{self.export.pk}") as self.reports:
            self.export_from(queryset)

    # --- between chunks ------------------------------------------------------------------

    def own_rows(self) -> QuerySet[Any]:
        return ReportExport.objects.filter(pk=self.export.pk, run_token=self.token)

    def before_write(self) -> Outcome | None:
        # The answer to the progress report of the chunk before: a pause or cancel asked by
        # then stops here, before this chunk is written.
        assert self.reports is not None
        try:
            request = Request.of(self.reports.answer())
        except StatusUnavailable as exc:
            self.pause(error=f"Paused: Redis could not be reached ({exc}).")
            return Outcome.PAUSED
        if request == Request.CANCEL:
            self.cancel()
            return Outcome.CANCELED
        if request == Request.PAUSE:
            self.pause()
            return Outcome.PAUSED
        return None

    def counted(self, rows: int) -> None:
        self.run_processed += rows

    def chunk_written(self) -> None:
        assert self.reports is not None
        self.reports.send(self.report_progress)

    def complete(self) -> Outcome:
        self.parts.write(self.writer.footer(empty=self.processed == 0))
        self.finish()
        return Outcome.FINISHED

    def save_checkpoint(self, **values: Any) -> None:
        values.setdefault("updated_at", timezone.now())
        super().save_checkpoint(**values)

    # --- progress ------------------------------------------------------------------------

    def rate(self) -> float:
        elapsed = time.monotonic() - self.run_started
        return round(self.run_processed / elapsed, 1) if elapsed > 0 else 0.0

    def report_progress(self) -> str:
        """Show the progress in the slot; returns the request the slot holds."""
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

    def report_shards_progress(self, processed: int, by_this_run: int) -> str:
        """``report_progress`` of a sharded export: ``processed`` rows in all its shards,
        ``by_this_run`` of them since this run began."""
        self.processed, self.run_processed = processed, by_this_run
        return self.report_progress()

    def live_values(self) -> dict[str, Any]:
        return {"status": Status.RUNNING, "run": self.token, "processed": self.processed}

    # --- the end -------------------------------------------------------------------------

    def show_end(self, status: int, values: dict[str, Any], allow_missing: bool = False) -> None:
        show_run_end(
            self.store,
            self.export,
            self.token,
            status,
            {"processed": self.processed, **values},
            allow_missing=allow_missing,
        )

    def pause(self, error: str = "", processed: int | None = None) -> None:
        """Save the checkpoint and let go of the slot (``processed``: a sharded export's rows)."""
        if processed is not None:
            self.processed = processed
        self.save_checkpoint(status=Status.PAUSED, run_token="", error=error)
        try:
            self.show_end(Status.PAUSED, {"error": error, "rate": ""}, allow_missing=True)
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
        if not end_export(
            self.export,
            Status.CANCELED,
            {"checkpoint": {}, "finished_at": now, "updated_at": now},
            run_token=self.token,
            parts=self.parts,
            show=lambda: self.show_end(Status.CANCELED, {"finished_at": now}),
        ):
            raise Superseded(export_id=self.export.pk)

    def finish(self, pieces: list[Piece] | None = None, processed: int | None = None) -> None:
        """Publish the file, from this run's parts or the given ``pieces`` (a sharded export,
        of ``processed`` rows).

        Only a run that still owns the export publishes, under a name of its own, and the file
        counts once the guarded update records it: a run that lost the export meanwhile
        deletes its own file, never the one another run recorded.
        """
        if processed is not None:
            self.processed = processed
        self.parts.flush()
        if not self.owns_export():
            raise Superseded(export_id=self.export.pk)
        name, size, sha256 = publish(
            self.storage,
            self.parts.parts if pieces is None else pieces,
            final_name(self.export, self.writer.extension, self.token),
            self.export.compression,
            digest=self.parts.digest if pieces is None else None,
        )
        now = timezone.now()
        ended = {"processed": self.processed, "total": self.processed, "finished_at": now}
        if not end_export(
            self.export,
            Status.FINISHED,
            {
                **ended,
                "file_name": name,
                "file_size": size,
                "sha256": sha256,
                "checkpoint": {},
                "updated_at": now,
                "error": "",
            },
            run_token=self.token,
            only_running=True,
            keep=name,
            parts=self.parts,
            show=lambda: self.show_end(
                Status.FINISHED,
                {**ended, "file_size": size, "sha256": sha256, "rate": self.rate()},
                allow_missing=True,
            ),
        ):
            delete_quietly(self.storage, [name])
            raise Superseded(export_id=self.export.pk)
        logger.info("Export %s finished: %s rows, %s bytes.", self.export.pk, self.processed, size)

    def fail(self, exc: BaseException) -> None:
        now = timezone.now()
        error = f"{type(exc).__name__}: {exc}"
        logger.exception("Export %s failed.", self.export.pk)
        owned: bool | None = None  # unknown while the database does not answer
        connections[DEFAULT_DB_ALIAS].close_if_unusable_or_obsolete()
        try:
            owned = end_row(
                self.export,
                Status.ERROR,
                {"error": error, "finished_at": now, "updated_at": now},
                run_token=self.token,
            )
        except Exception:
            logger.exception("Export %s: the failure could not be recorded.", self.export.pk)
        self.parts.discard_unsaved()
        if owned is False:
            # Another run owns the export now: its files, status and signals are that run's.
            logger.warning("Export %s: run %s failed after losing it.", self.export.pk, self.token)
            return
        if owned:
            keep_for_retry(self.export)
        try:
            self.show_end(Status.ERROR, {"error": error, "finished_at": now})
        except StatusUnavailable:
            logger.warning("Export %s: Redis unreachable to record the error.", self.export.pk)
        announce(self.export, Status.ERROR)
