"""Running a sharded export: the export's own run as coordinator, and the shard runs.

When ``plan`` splits an export, its own run (``runs.single``) queues one ``run_export_shard``
job per other shard and becomes the coordinator (``ShardedRun``): it claims and exports shards
itself like any helper, and between chunks it sums every shard's rows into the slot's
progress, answers pause and cancel once every shard has stopped, gives the shard of a lost
worker to another job, and finally assembles the shards' parts, in key order, into the one
published file. Helper jobs (``ShardRun``) claim pending shards until none is left; each shard
continues from its own checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from django.db.models import F, QuerySet

from django_report_export.conf import export_settings
from django_report_export.connection import get_redis
from django_report_export.exceptions import ReportExportError, StatusUnavailable
from django_report_export.formats.base import FormatWriter
from django_report_export.models import ReportExport, ReportExportShard, Status
from django_report_export.processes import discard_inherited_connections
from django_report_export.query import export_queryset
from django_report_export.queueing import enqueue_shard_jobs
from django_report_export.runs.base import ChunkedRun, Heartbeat, Outcome, Superseded
from django_report_export.runs.leases import (
    DONE,
    FAILED,
    PENDING,
    RUN_PREFIX,
    Beat,
    ShardState,
    ShardStore,
    release_shards,
)
from django_report_export.runs.plan import chunk_separator, shard_queryset
from django_report_export.status import Request, StatusStore, now_ts
from django_report_export.storage import Piece, checkpoint_parts

logger = logging.getLogger(__name__)

#: Seconds between looks at the shards while the coordinator has none of its own to export.
POLL_SECONDS = 0.2
#: Slot statuses that end every shard run (the slot's export was canceled, failed or replaced).
ENDED = {str(int(status)) for status in (*Status.ended(), Status.READY)}


def run_export_shard(export_id: str) -> None:
    """RQ job: export pending shards of a running sharded export until none is left."""
    discard_inherited_connections()
    export = ReportExport.objects.filter(pk=export_id).first()
    if export is None:
        return
    shards = {shard.index: shard for shard in export.shard_set.all()}
    store = ShardStore(get_redis(), export)
    try:
        while True:
            token = uuid.uuid4().hex
            index = store.claim(token, len(shards), now_ts())
            if index is None:
                return
            if ShardRun(export, shards[index], store, token).execute() != Outcome.FINISHED:
                return
    except StatusUnavailable as exc:
        logger.warning("Export %s: shard job stopped, Redis unreachable (%s).", export.pk, exc)


class ShardRun(ChunkedRun):
    """One run of one shard, from its checkpoint to its last key, a pause or a cancel."""

    def __init__(
        self,
        export: ReportExport,
        shard: ReportExportShard,
        store: ShardStore,
        token: str,
        between_chunks: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(export, token, shard=shard.index)
        self.shard = shard
        self.store = store
        #: The coordinator's own check between chunks (progress, lost shards, requests).
        self.between_chunks = between_chunks
        self.label = f"shard {shard.index} "
        self.saving = f"saving shard {shard.index}'s checkpoint"
        self.checkpoint_processed = 0
        #: Set when the coordinator's own check failed and this run already let its shard go.
        self.released = False

    def own_rows(self) -> QuerySet[Any]:
        return ReportExportShard.objects.filter(pk=self.shard.pk, run_token=self.token)

    def execute(self) -> Outcome:
        if not self.begin():
            return Outcome.LOST
        self.log("began")
        heartbeat = Heartbeat(f"report-export-shard-{self.export.pk}-{self.shard.index}", self.beat)
        heartbeat.start()
        try:
            return self.export_rows()
        except Superseded:
            logger.warning("Export %s shard %s: run superseded.", self.export.pk, self.shard.index)
            self.parts.discard_unsaved()
            return Outcome.LOST
        except StatusUnavailable:
            raise
        except Exception as exc:
            if not self.released:
                self.record_failure(exc)
            raise
        finally:
            heartbeat.stop()
            self.parts.close()
            self.log("ended")

    def export_rows(self) -> Outcome:
        queryset = export_queryset(self.service, self.export)
        return self.export_from(shard_queryset(queryset, self.shard))

    def log(self, event: str) -> None:
        logger.info(
            "Export %s shard %s run %s %s at row %s.",
            self.export.pk,
            self.shard.index,
            self.token,
            event,
            self.processed,
        )

    def begin(self) -> bool:
        """Take the shard in the database too; refused if it is done or another run has it."""
        free = ReportExportShard.objects.filter(pk=self.shard.pk, done=False, run_token="")
        if not free.update(run_token=self.token):
            # The lease was out of date: put back what the database says, and take no rows.
            self.shard.refresh_from_db()
            state = DONE if self.shard.done else RUN_PREFIX + self.shard.run_token
            self.store.move(self.shard.index, RUN_PREFIX + self.token, state)
            return False
        self.shard.refresh_from_db()
        self.resume_from(self.shard.checkpoint or {})
        self.checkpoint_processed = self.processed
        return True

    def complete(self) -> Outcome:
        self.finish()
        return Outcome.FINISHED

    def after_write(self) -> Outcome | None:
        try:
            request = self.check()
        except StatusUnavailable:
            self.stop(Request.PAUSE)
            raise
        if request:
            self.stop(request)
            return Outcome(request.value)
        return None

    def check(self) -> Request:
        """``PAUSE`` or ``CANCEL`` if the shard must stop now, else ``NONE``."""
        beat = self.store.beat(self.shard.index, self.token, now_ts(), self.processed)
        request = slot_request(beat, self.export)
        if request:
            return request
        if not beat.held and not beat.lost_hash:
            raise Superseded(export_id=self.export.pk)
        # A lost hash is rebuilt by the coordinator from the database, with this run's token.
        if self.between_chunks is not None:
            try:
                return Request.of(self.between_chunks())
            except StatusUnavailable:
                raise  # paused like any shard run, by after_write
            except BaseException:
                # The export stops for a reason of its own, not this shard's: let go of it.
                self.released = True
                self.stop(Request.CANCEL)
                raise
        return Request.NONE

    def beat(self) -> None:
        self.store.beat(self.shard.index, self.token, now_ts())

    def save_checkpoint(self, **values: Any) -> None:
        super().save_checkpoint(**values)
        self.checkpoint_processed = self.processed

    def finish(self) -> None:
        self.save_checkpoint(done=True, run_token="")
        with contextlib.suppress(StatusUnavailable):
            self.store.move(
                self.shard.index, RUN_PREFIX + self.token, DONE, n=self.processed, hb=now_ts()
            )

    def stop(self, request: Request) -> None:
        """Pause: keep the rows written so far; cancel: drop them. Either way, let go."""
        if request == Request.PAUSE:
            self.save_checkpoint(run_token="")
        else:
            self.parts.discard_unsaved()
            self.own_rows().update(run_token="")
            self.processed = self.checkpoint_processed
        with contextlib.suppress(StatusUnavailable):
            self.store.move(self.shard.index, RUN_PREFIX + self.token, PENDING, n=self.processed)

    def record_failure(self, exc: BaseException) -> None:
        logger.exception("Export %s shard %s failed.", self.export.pk, self.shard.index)
        with contextlib.suppress(Exception):
            self.parts.discard_unsaved()
            self.own_rows().update(run_token="")
        with contextlib.suppress(StatusUnavailable):
            self.store.move(
                self.shard.index,
                RUN_PREFIX + self.token,
                FAILED,
                error=f"{type(exc).__name__}: {exc}",
            )


def slot_request(beat: Beat, export: ReportExport) -> Request:
    """What the slot asks of the export's shard runs."""
    if beat.slot_status == "missing":
        return Request.NONE  # Redis lost the slot; the coordinator puts it back
    if beat.slot_id != str(export.pk) or beat.slot_status in ENDED:
        return Request.CANCEL
    if beat.slot_status == str(int(Status.PAUSED)):
        return Request.PAUSE
    return Request.of(beat.request)


class OwnRun(Protocol):
    """What the coordinator needs of the export's own run (``runs.single.ExportRun``)."""

    export: ReportExport
    store: StatusStore
    writer: FormatWriter

    def report_shards_progress(self, processed: int, by_this_run: int) -> str: ...

    def pause(self, error: str = "", processed: int | None = None) -> None: ...

    def cancel(self) -> None: ...

    def finish(self, pieces: list[Piece] | None = None, processed: int | None = None) -> None: ...


class ShardedRun:
    """The coordinator: the export's own run, once its rows are split into shards."""

    def __init__(self, run: OwnRun, shards: list[ReportExportShard]) -> None:
        self.run = run
        self.export = run.export
        self.shards = {shard.index: shard for shard in shards}
        self.store = ShardStore(run.store.redis, self.export)
        self.states: dict[int, ShardState] = {}
        self.first_processed: int | None = None

    def execute(self) -> None:
        try:
            self.store.rebuild(list(self.shards.values()), now_ts())
            pending = sum(1 for shard in self.shards.values() if not shard.done)
            enqueue_shard_jobs(self.export, pending - 1)
            request = self.export_shards()
        except StatusUnavailable as exc:
            self.stop(Request.PAUSE, error=f"Paused: Redis could not be reached ({exc}).")
            return
        if request:
            self.stop(request)
        else:
            self.finish()

    def load_shards(self) -> list[ReportExportShard]:
        shards = list(self.export.shard_set.order_by("index"))
        self.shards = {shard.index: shard for shard in shards}
        return shards

    def export_shards(self) -> Request:
        """Export shards until all are done (``NONE``) or a pause or cancel is asked."""
        while True:
            request = self.monitor()
            if request:
                return request
            token = uuid.uuid4().hex
            index = self.store.claim(token, len(self.shards), now_ts())
            if index is not None:
                shard_run = ShardRun(
                    self.export, self.shards[index], self.store, token, self.monitor
                )
                outcome = shard_run.execute()
                if outcome in (Outcome.PAUSED, Outcome.CANCELED):
                    return Request(outcome.value)
                continue
            if self.states and all(state.state == DONE for state in self.states.values()):
                return Request.NONE
            time.sleep(POLL_SECONDS)

    def monitor(self) -> Request:
        """Sum the shards' rows into the slot, free lost shards; returns the slot's request."""
        states = self.store.read()
        if len(states) < len(self.shards):
            self.store.rebuild(self.load_shards(), now_ts())
            states = self.store.read()
        now = now_ts()
        for index, state in sorted(states.items()):
            if state.state == FAILED:
                raise ReportExportError(
                    f"Shard {index} failed: {state.error}", export_id=self.export.pk
                )
            if state.token and now - state.heartbeat > export_settings.STALE_AFTER:
                self.take_lost(index, state.state)
        self.states = states
        processed = sum(state.processed for state in states.values())
        if self.first_processed is None:
            self.first_processed = processed
        return Request.of(
            self.run.report_shards_progress(processed, processed - self.first_processed)
        )

    def take_lost(self, index: int, state: str) -> None:
        shard = ReportExportShard.objects.get(pk=self.shards[index].pk)
        if shard.done:  # its run finished but could not say so in Redis
            self.store.move(index, state, DONE, n=shard.processed)
            return
        if not self.store.move(index, state, PENDING, n=shard.checkpoint.get("processed", 0)):
            return
        ReportExportShard.objects.filter(pk=shard.pk, done=False).update(
            run_token="", retries=F("retries") + 1
        )
        if shard.retries >= export_settings.MAX_RETRIES:
            raise ReportExportError(
                f"The worker exporting shard {index} was lost; gave up after "
                f"{shard.retries} continuation(s).",
                export_id=self.export.pk,
            )
        logger.warning(
            "Export %s: worker of shard %s lost; continuing it from row %s.",
            self.export.pk,
            index,
            shard.checkpoint.get("processed", 0),
        )
        enqueue_shard_jobs(self.export, 1)

    def stop(self, request: Request, error: str = "") -> None:
        """Pause or cancel the export once no shard run writes any more."""
        deadline = time.monotonic() + export_settings.CANCEL_TIMEOUT / 2
        with contextlib.suppress(StatusUnavailable):
            while time.monotonic() < deadline and self.live_shard_runs():
                time.sleep(POLL_SECONDS)
        # A shard run that did not stop in time finds itself superseded at its next chunk.
        release_shards(self.export, self.store.redis)
        if request == Request.CANCEL:
            self.run.cancel()  # its end deletes the shards
            return
        shards = self.load_shards()
        processed = sum(shard.checkpoint.get("processed", 0) for shard in shards)
        self.run.pause(error=error, processed=processed)
        with contextlib.suppress(StatusUnavailable):
            self.store.rebuild(shards, now_ts())

    def live_shard_runs(self) -> list[ShardState]:
        """Shard runs holding a lease whose heartbeat is recent."""
        now = now_ts()
        return [
            state
            for state in self.store.read().values()
            if state.token and now - state.heartbeat <= export_settings.STALE_AFTER
        ]

    def finish(self) -> None:
        """Assemble the shards' parts, in key order, into the export's file."""
        shards = self.load_shards()
        unfinished = [shard.index for shard in shards if not shard.done]
        if unfinished:
            raise ReportExportError(
                f"Shards {unfinished} are not done; the file cannot be assembled.",
                export_id=self.export.pk,
            )
        writer = self.run.writer
        separator = chunk_separator(writer) or b""
        pieces: list[Piece] = [writer.header()]
        processed = 0
        for shard in shards:
            if shard.processed and processed:
                pieces.append(separator)
            pieces.extend(checkpoint_parts(shard.checkpoint))
            processed += shard.processed
        pieces.append(writer.footer(empty=processed == 0))
        self.run.finish(pieces, processed=processed)  # its end deletes the shards
