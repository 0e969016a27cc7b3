"""Running a sharded export: the job that owns the export, and the jobs that help it.

The export's own job (``job.run_export``) holds the slot as for any export. When ``shards.plan``
splits the export, that job queues one ``run_export_shard`` job per other shard and becomes the
coordinator (``ShardedRun``): it claims and exports shards itself like any helper, and between
chunks it sums every shard's rows into the slot's progress, answers pause and cancel once every
shard has stopped, gives the shard of a lost worker to another job, and finally assembles the
shards' parts, in key order, into the one published file. Helper jobs (``ShardRun``) claim
pending shards until none is left; each shard continues from its own checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from typing import Any

from django.db import router
from django.db.models import F
from redis.exceptions import RedisError

from django_report_export.conf import export_settings
from django_report_export.connection import get_queue, get_redis
from django_report_export.exceptions import ReportExportError, StatusUnavailable
from django_report_export.formats import get_writer_class
from django_report_export.job import (
    ExportRun,
    Heartbeat,
    Superseded,
    export_queryset,
    reconnecting,
)
from django_report_export.keys import key_from_json, key_to_json
from django_report_export.models import ReportExport, ReportExportShard, Status
from django_report_export.processes import discard_inherited_connections
from django_report_export.readers import ChunkReader, get_reader
from django_report_export.registry import site
from django_report_export.shards import (
    DONE,
    FAILED,
    PENDING,
    RUN_PREFIX,
    Beat,
    ShardState,
    ShardStore,
    chunk_separator,
    forget_shards,
    release_shards,
    shard_queryset,
)
from django_report_export.status import now_ts
from django_report_export.storage import PartSequence, Piece, checkpoint_parts, get_storage

logger = logging.getLogger(__name__)

SHARD_JOB_PATH = "django_report_export.sharded.run_export_shard"
#: Seconds between looks at the shards while the coordinator has none of its own to export.
POLL_SECONDS = 0.2
#: Outcomes of a shard run.
FINISHED, PAUSED, CANCELED, LOST = "finished", "pause", "cancel", "lost"
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
            if index is None or ShardRun(export, shards[index], store, token).execute() != FINISHED:
                return
    except StatusUnavailable as exc:
        logger.warning("Export %s: shard job stopped, Redis unreachable (%s).", export.pk, exc)


def enqueue_shard_jobs(export: ReportExport, count: int) -> None:
    """Queue ``count`` helper jobs; the coordinator exports whatever they do not take."""
    queue = get_queue()
    for _ in range(count):
        try:
            queue.enqueue_call(
                SHARD_JOB_PATH,
                args=(str(export.pk),),
                timeout=export_settings.JOB_TIMEOUT,
                job_id=f"report-export-{export.pk}-shard-{uuid.uuid4().hex[:8]}",
                description=f"report export {export.service} {export.pk} (shard)",
            )
        except (RedisError, OSError) as exc:
            logger.warning("Export %s: a shard job could not be queued (%s).", export.pk, exc)
            return


class ShardRun:
    """One run of one shard, from its checkpoint to its last key, a pause or a cancel."""

    def __init__(
        self,
        export: ReportExport,
        shard: ReportExportShard,
        store: ShardStore,
        token: str,
        between_chunks: Any = None,
    ) -> None:
        self.export = export
        self.shard = shard
        self.store = store
        self.token = token
        #: The coordinator's own check between chunks (progress, lost shards, requests).
        self.between_chunks = between_chunks
        self.service = site.get(export.service)
        self.model = self.service.model
        self.storage = get_storage()
        self.writer = get_writer_class(export.format)(export.service, export.fields)
        self.parts = PartSequence(self.storage, export, token, shard=shard.index)
        self.processed = 0
        self.checkpoint_processed = 0
        self.last_key: Any = None
        #: Set when the coordinator's own check failed and this run already let its shard go.
        self.released = False

    @property
    def mine(self) -> Any:
        return ReportExportShard.objects.filter(pk=self.shard.pk, run_token=self.token)

    def execute(self) -> str:
        if not self.begin():
            return LOST
        self.log("began")
        heartbeat = Heartbeat(f"report-export-shard-{self.export.pk}-{self.shard.index}", self.beat)
        heartbeat.start()
        try:
            return self.export_rows()
        except Superseded:
            logger.warning("Export %s shard %s: run superseded.", self.export.pk, self.shard.index)
            self.parts.discard_unsaved()
            return LOST
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
        checkpoint = self.shard.checkpoint or {}
        self.parts.resume(checkpoint_parts(checkpoint))
        self.processed = self.checkpoint_processed = checkpoint.get("processed", 0)
        self.last_key = key_from_json(self.model, checkpoint.get("last_key"))
        return True

    def export_rows(self) -> str:
        queryset = shard_queryset(export_queryset(self.service, self.export), self.shard)
        alias = export_settings.DATABASE_ALIAS
        reader = reconnecting(
            self.export.pk,
            lambda: get_reader(queryset, self.export.fields, self.writer),
            alias=alias,
            what="preparing the reader",
        )
        try:
            return self.export_chunks(reader, alias)
        finally:
            reader.close()

    def export_chunks(self, reader: ChunkReader, alias: str) -> str:
        chunk_size = export_settings.CHUNK_SIZE
        last_checkpoint = time.monotonic()
        while True:
            chunk = reconnecting(
                self.export.pk,
                lambda: reader.read(self.last_key, chunk_size, first=self.processed == 0),
                alias=alias,
                what=f"reading shard {self.shard.index} after key {self.last_key!r}",
            )
            if chunk.count:
                self.parts.write(chunk.data)
                self.processed += chunk.count
                self.last_key = chunk.last_key
            if chunk.count < chunk_size:
                self.finish()
                return FINISHED
            try:
                request = self.check()
            except StatusUnavailable:
                self.stop(PAUSED)
                raise
            if request:
                self.stop(request)
                return request
            if time.monotonic() - last_checkpoint >= export_settings.CHECKPOINT_INTERVAL:
                self.save_checkpoint()
                last_checkpoint = time.monotonic()

    def check(self) -> str:
        """``pause`` or ``cancel`` if the shard must stop now, else ``""``."""
        beat = self.store.beat(self.shard.index, self.token, now_ts(), self.processed)
        request = slot_request(beat, self.export)
        if request:
            return request
        if not beat.held and not beat.lost_hash:
            raise Superseded(export_id=self.export.pk)
        # A lost hash is rebuilt by the coordinator from the database, with this run's token.
        if self.between_chunks is not None:
            try:
                return str(self.between_chunks())
            except StatusUnavailable:
                raise  # paused like any shard run, by export_chunks
            except BaseException:
                # The export stops for a reason of its own, not this shard's: let go of it.
                self.released = True
                self.stop(CANCELED)
                raise
        return ""

    def beat(self) -> None:
        self.store.beat(self.shard.index, self.token, now_ts())

    def checkpoint(self) -> dict[str, Any]:
        last_key = key_to_json(self.model, self.last_key)
        return {"last_key": last_key, **self.parts.checkpoint(), "processed": self.processed}

    def save_checkpoint(self, **values: Any) -> None:
        self.parts.flush()
        values.update(checkpoint=self.checkpoint(), processed=self.processed)
        saved = reconnecting(
            self.export.pk,
            lambda: self.mine.update(**values),
            alias=router.db_for_write(ReportExportShard),
            what=f"saving shard {self.shard.index}'s checkpoint",
        )
        if not saved:
            raise Superseded(export_id=self.export.pk)
        self.parts.mark_saved()
        self.checkpoint_processed = self.processed

    def finish(self) -> None:
        self.save_checkpoint(done=True, run_token="")
        with contextlib.suppress(StatusUnavailable):
            self.store.move(
                self.shard.index, RUN_PREFIX + self.token, DONE, n=self.processed, hb=now_ts()
            )

    def stop(self, request: str) -> None:
        """Pause: keep the rows written so far; cancel: drop them. Either way, let go."""
        if request == PAUSED:
            self.save_checkpoint(run_token="")
        else:
            self.parts.discard_unsaved()
            self.mine.update(run_token="")
            self.processed = self.checkpoint_processed
        with contextlib.suppress(StatusUnavailable):
            self.store.move(self.shard.index, RUN_PREFIX + self.token, PENDING, n=self.processed)

    def record_failure(self, exc: BaseException) -> None:
        logger.exception("Export %s shard %s failed.", self.export.pk, self.shard.index)
        with contextlib.suppress(Exception):
            self.parts.discard_unsaved()
            self.mine.update(run_token="")
        with contextlib.suppress(StatusUnavailable):
            self.store.move(
                self.shard.index,
                RUN_PREFIX + self.token,
                FAILED,
                error=f"{type(exc).__name__}: {exc}",
            )


def slot_request(beat: Beat, export: ReportExport) -> str:
    """What the slot asks of the export's shard runs: ``pause``, ``cancel`` or nothing."""
    if beat.slot_status == "missing":
        return ""  # Redis lost the slot; the coordinator puts it back
    if beat.slot_id != str(export.pk) or beat.slot_status in ENDED:
        return CANCELED
    if beat.slot_status == str(int(Status.PAUSED)):
        return PAUSED
    return beat.request if beat.request in (PAUSED, CANCELED) else ""


class ShardedRun:
    """The coordinator: the export's own run, once its rows are split into shards."""

    def __init__(self, run: ExportRun, shards: list[ReportExportShard]) -> None:
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
            self.stop(PAUSED, error=f"Paused: Redis could not be reached ({exc}).")
            return
        if request:
            self.stop(request)
        else:
            self.finish()

    def load_shards(self) -> list[ReportExportShard]:
        shards = list(self.export.shard_set.order_by("index"))
        self.shards = {shard.index: shard for shard in shards}
        return shards

    def export_shards(self) -> str:
        """Export shards until all are done (``""``) or a pause or cancel is asked."""
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
                if outcome in (PAUSED, CANCELED):
                    return outcome
                continue
            if self.states and all(state.state == DONE for state in self.states.values()):
                return ""
            time.sleep(POLL_SECONDS)

    def monitor(self) -> str:
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
        self.run.processed = processed
        self.run.run_processed = processed - self.first_processed
        return self.run.report_progress()

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

    def stop(self, request: str, error: str = "") -> None:
        """Pause or cancel the export once no shard run writes any more."""
        deadline = time.monotonic() + export_settings.CANCEL_TIMEOUT / 2
        with contextlib.suppress(StatusUnavailable):
            while time.monotonic() < deadline and self.live_shard_runs():
                time.sleep(POLL_SECONDS)
        # A shard run that did not stop in time finds itself superseded at its next chunk.
        release_shards(self.export, self.store.redis)
        if request == CANCELED:
            self.run.cancel()
            self.forget()
            return
        shards = self.load_shards()
        self.run.processed = sum(shard.checkpoint.get("processed", 0) for shard in shards)
        self.run.pause(error=error)
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
        self.run.processed = processed
        self.run.finish(pieces)
        self.forget()

    def forget(self) -> None:
        forget_shards(self.export, self.store.redis)
