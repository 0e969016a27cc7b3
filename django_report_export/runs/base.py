"""What an export's own run and a shard's run share: the chunk loop and its checkpoints.

A run reads ``CHUNK_SIZE`` rows at a time after the last key (keyset pagination; its first
chunk at most ``FIRST_CHUNK_ROWS``), writes them into its parts, and every
``CHECKPOINT_INTERVAL`` seconds makes the parts durable and saves the last key on its row,
guarded by its run token, so another worker can continue from there. What a run does between
chunks (report progress, look for a pause or cancel) is its own: the hooks of ``ChunkedRun``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from enum import StrEnum
from typing import Any, TypeVar

from django.db import InterfaceError, OperationalError, connections, router
from django.db.models import QuerySet

from django_report_export.conf import export_settings
from django_report_export.documents import reader_for, written_columns
from django_report_export.exceptions import ExportCanceled, StatusUnavailable
from django_report_export.formats import get_writer_class
from django_report_export.formats.base import FormatWriter
from django_report_export.keys import key_from_json, key_to_json
from django_report_export.models import ReportExport
from django_report_export.options import FileOptions
from django_report_export.readers import Chunk, ChunkReader
from django_report_export.registry import site
from django_report_export.storage import PartSequence, checkpoint_parts, get_storage

logger = logging.getLogger(__name__)

#: Tries of a chunk read or checkpoint write on a dropped database connection (reopened
#: between tries) before the export fails.
DB_ATTEMPTS = 3
#: Seconds before the first reconnect; the n-th waits n times as long.
DB_RETRY_SECONDS = 1.0
#: A run's first chunk holds at most this many rows (where its writer allows,
#: ``short_first_chunk``), so that its first rows are read without waiting for a whole chunk
#: of documents to be built.
FIRST_CHUNK_ROWS = 1000

T = TypeVar("T")


class Outcome(StrEnum):
    """How a run ended: its rows all written, paused, canceled, or taken from it."""

    FINISHED = "finished"
    PAUSED = "pause"
    CANCELED = "cancel"
    LOST = "lost"


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
    job reads the next chunk; the answer is taken before that chunk is written."""

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
            time.sleep(attempt * DB_RETRY_SECONDS)
    raise AssertionError("unreachable")


class ChunkedRun:
    """A run that writes rows, chunk by chunk, into parts of its own (``token``)."""

    #: What this run reads and saves, in log lines.
    label = ""
    saving = "saving the checkpoint"

    def __init__(self, export: ReportExport, token: str, shard: int | None = None) -> None:
        self.export = export
        self.service = site.get(export.service)
        self.model = self.service.model
        self.storage = get_storage()
        self.token = token
        columns = written_columns(self.service, export.fields, export.format)
        self.writer: FormatWriter = get_writer_class(export.format)(export.service, columns)
        self.writer.options = FileOptions.from_json(export.options)
        self.parts = PartSequence(self.storage, export, token, shard=shard)
        self.processed = 0
        self.last_key: Any = None

    # --- hooks -----------------------------------------------------------------------------

    def own_rows(self) -> QuerySet[Any]:
        """The row this run's checkpoints are saved on, while the run holds it."""
        raise NotImplementedError

    def before_write(self) -> Outcome | None:
        """Between reading a chunk and writing it: an outcome stops the run there."""
        return None

    def after_write(self) -> Outcome | None:
        """After writing a chunk that was not the last: an outcome stops the run there."""
        return None

    def chunk_written(self) -> None:
        """After a chunk, and the checkpoint if one was due."""

    def complete(self) -> Outcome:
        """Every row is written."""
        raise NotImplementedError

    def counted(self, rows: int) -> None:
        """``rows`` more were written."""

    # --- the loop --------------------------------------------------------------------------

    def export_from(self, queryset: QuerySet[Any]) -> Outcome:
        reader = self.reconnecting(
            lambda: reader_for(self.service, self.export.fields, queryset, self.writer),
            what="preparing the reader",
        )
        if reader.name != self.export.reader:
            # Which read path wrote the rows (the last run's, should a resumed one differ).
            ReportExport.objects.filter(pk=self.export.pk).update(reader=reader.name)
            self.export.reader = reader.name
        try:
            return self.export_chunks(reader)
        finally:
            reader.close()

    def export_chunks(self, reader: ChunkReader) -> Outcome:
        last_checkpoint = time.monotonic()
        while True:
            chunk_size = export_settings.CHUNK_SIZE
            if self.processed == 0 and self.writer.short_first_chunk:
                chunk_size = min(chunk_size, FIRST_CHUNK_ROWS)
            chunk = self.read_chunk(reader, chunk_size)
            stopped = self.before_write()
            if stopped is not None:
                return stopped
            if chunk.count:
                for piece in chunk.pieces():
                    self.parts.write(piece)
                self.processed += chunk.count
                self.last_key = chunk.last_key
                self.counted(chunk.count)
            if chunk.count < chunk_size:
                return self.complete()
            stopped = self.after_write()
            if stopped is not None:
                return stopped
            if time.monotonic() - last_checkpoint >= export_settings.CHECKPOINT_INTERVAL:
                self.save_checkpoint()
                last_checkpoint = time.monotonic()
            self.chunk_written()

    def read_chunk(self, reader: ChunkReader, chunk_size: int) -> Chunk:
        """The next chunk; a dropped database connection is reopened and the read retried."""
        return self.reconnecting(
            lambda: reader.read(self.last_key, chunk_size, first=self.processed == 0),
            what=f"reading {self.label}after key {self.last_key!r}",
        )

    def reconnecting(self, action: Callable[[], T], *, what: str, alias: str | None = None) -> T:
        alias = alias or export_settings.DATABASE_ALIAS
        return reconnecting(self.export.pk, action, alias=alias, what=what)

    # --- checkpoints -----------------------------------------------------------------------

    def resume_from(self, checkpoint: dict[str, Any]) -> None:
        self.parts.resume(checkpoint_parts(checkpoint))
        self.processed = checkpoint.get("processed", 0)
        self.writer.resume_state(checkpoint.get("writer"))
        self.last_key = key_from_json(self.model, checkpoint.get("last_key"))

    def checkpoint(self) -> dict[str, Any]:
        last_key = key_to_json(self.model, self.last_key)
        checkpoint = {"last_key": last_key, **self.parts.checkpoint(), "processed": self.processed}
        state = self.writer.checkpoint_state(self.processed)
        return checkpoint if state is None else {**checkpoint, "writer": state}

    def save_checkpoint(self, **values: Any) -> None:
        """Make the rows written so far durable; a superseded run cannot do it."""
        self.parts.flush()
        values.update(checkpoint=self.checkpoint(), processed=self.processed)
        rows = self.own_rows()
        saved = self.reconnecting(
            lambda: rows.update(**values),
            alias=router.db_for_write(rows.model),
            what=self.saving,
        )
        if not saved:
            raise Superseded(export_id=self.export.pk)
        self.parts.mark_saved()
