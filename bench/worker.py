"""An RQ worker whose work horse records how long the job took and its peak memory."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from rq import Worker

#: Environment variable naming the file the work horse writes its figures to.
RESULT_ENV = "BENCH_HORSE_RESULT"


def peak_rss_kib() -> int:
    """This process's peak resident set size (``VmHWM``), in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0  # pragma: no cover - not Linux


class MeasuringWorker(Worker):
    """A forking RQ worker: its work horse (the process running the export job) appends the
    job's duration and its own peak RSS, one JSON line per job, to the file named by
    ``BENCH_HORSE_RESULT``."""

    def perform_job(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> bool:
        started = time.perf_counter()
        rss_before = peak_rss_kib()
        try:
            return super().perform_job(job, queue, *args, **kwargs)
        finally:
            figures = {
                "job_seconds": time.perf_counter() - started,
                "horse_rss_kib": peak_rss_kib(),
                "horse_rss_at_start_kib": rss_before,
                "horse_pid": os.getpid(),
            }
            path = os.environ.get(RESULT_ENV)
            if path:
                with open(path, "a", encoding="utf-8") as result:
                    result.write(json.dumps(figures) + "\n")
