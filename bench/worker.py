"""RQ workers whose process running the export job records how long the job took, how much of
it the reader took, and its peak memory: a forking one, and one that runs the job itself."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from rq import SimpleWorker, Worker

#: Environment variable naming the file the work horse writes its figures to.
RESULT_ENV = "BENCH_HORSE_RESULT"


def peak_rss_kib() -> int:
    """This process's peak resident set size (``VmHWM``), in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0  # pragma: no cover - not Linux


class ReaderClock:
    """The time spent in the export readers' ``read`` (fetching a chunk and encoding it),
    summed. What a job or the loop alone spends outside it is what surrounds the reader: for
    the job its machinery, for the loop its file writes. The reader's own time moves by a
    quarter between runs of the same code on a shared machine; this difference does not."""

    def __init__(self) -> None:
        self.seconds = 0.0
        #: When the first ``read`` returned (``time.time()``), its first rows read; 0: none yet.
        self.first_read_at = 0.0

    @contextlib.contextmanager
    def running(self) -> Iterator[ReaderClock]:
        from django_report_export.readers.orm import OrmChunkReader
        from django_report_export.readers.postgres import PostgresChunkReader

        originals = {reader: reader.read for reader in (OrmChunkReader, PostgresChunkReader)}

        def timed(read: Any) -> Any:
            def read_timed(reader: Any, *args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return read(reader, *args, **kwargs)
                finally:
                    self.seconds += time.perf_counter() - started
                    self.first_read_at = self.first_read_at or time.time()

            return read_timed

        for reader, read in originals.items():
            reader.read = timed(read)  # type: ignore[method-assign]
        try:
            yield self
        finally:
            for reader, read in originals.items():
                reader.read = read  # type: ignore[method-assign]


class JobFigures:
    """Worker behaviour: the process running the export job appends the job's duration, its
    reader's share of it and its own peak RSS, one JSON line per job, to the file named by
    ``BENCH_HORSE_RESULT``."""

    def perform_job(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> bool:
        started = time.perf_counter()
        rss_before = peak_rss_kib()
        with ReaderClock().running() as reader_clock:
            try:
                return super().perform_job(job, queue, *args, **kwargs)  # type: ignore[misc]
            finally:
                figures = {
                    "job_seconds": time.perf_counter() - started,
                    "read_seconds": reader_clock.seconds,
                    "first_read_at": reader_clock.first_read_at,
                    "horse_rss_kib": peak_rss_kib(),
                    "horse_rss_at_start_kib": rss_before,
                    "horse_pid": os.getpid(),
                }
                path = os.environ.get(RESULT_ENV)
                if path:
                    with open(path, "a", encoding="utf-8") as result:
                        result.write(json.dumps(figures) + "\n")


class MeasuringWorker(JobFigures, Worker):
    """A forking RQ worker whose work horse reports the job's figures."""


class InProcessMeasuringWorker(JobFigures, SimpleWorker):
    """An RQ worker that runs the job in its own process (``SimpleWorker``) and reports its
    figures: ``bench.instructions`` counts one process, where a forked work horse's count
    would begin with everything its parent had counted before the fork."""
