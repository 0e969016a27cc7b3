"""RQ workers whose process running the export job records how long the job took, how much of
it the reader took, and its peak memory: a forking one, and one that runs the job itself."""

from __future__ import annotations

import contextlib
import json
import os
import resource
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
    summed, and likewise in the writes of the file's bytes (``PartSequence.write``) and in
    publishing it (``ExportRun.finish``). What a job or the loop alone spends outside the
    reader is what surrounds it: for the job its machinery, for the loop its file writes. The
    reader's own time moves by a quarter between runs of the same code on a shared machine;
    this difference does not."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.write_seconds = 0.0
        self.finish_seconds = 0.0
        #: When the first ``read`` returned (``time.time()``), its first rows read; 0: none yet.
        self.first_read_at = 0.0

    @contextlib.contextmanager
    def running(self) -> Iterator[ReaderClock]:
        from django_report_export.readers.orm import OrmChunkReader
        from django_report_export.readers.postgres import PostgresChunkReader
        from django_report_export.runs.single import ExportRun
        from django_report_export.storage import PartSequence

        timed_methods = {
            (OrmChunkReader, "read"): "seconds",
            (PostgresChunkReader, "read"): "seconds",
            (PartSequence, "write"): "write_seconds",
            (ExportRun, "finish"): "finish_seconds",
        }
        originals = {target: getattr(*target) for target in timed_methods}

        def timed(method: Any, total: str) -> Any:
            def method_timed(instance: Any, *args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return method(instance, *args, **kwargs)
                finally:
                    setattr(self, total, getattr(self, total) + time.perf_counter() - started)
                    if total == "seconds":
                        self.first_read_at = self.first_read_at or time.time()

            return method_timed

        for (cls, name), total in timed_methods.items():
            setattr(cls, name, timed(originals[cls, name], total))
        try:
            yield self
        finally:
            for (cls, name), method in originals.items():
                setattr(cls, name, method)


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
                    "write_seconds": reader_clock.write_seconds,
                    "finish_seconds": reader_clock.finish_seconds,
                    "first_read_at": reader_clock.first_read_at,
                    "horse_rss_kib": peak_rss_kib(),
                    # The largest process the job forked and waited for (on SQLite, the
                    # reader's own, readers/sqlite_process.py), its shared pages included.
                    "children_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
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
