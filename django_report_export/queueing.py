"""Putting export jobs on the RQ queue.

RQ stores a queued job as the dotted path of its function, so these paths are a contract
with jobs queued by an earlier release: a path that changes keeps a shim module at its old
place for one release (``job.py``, ``sharded.py``, ``recovery.py``).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

from django.utils import timezone
from redis.exceptions import RedisError
from rq import Callback

from django_report_export.conf import export_settings
from django_report_export.connection import get_queue
from django_report_export.exceptions import QueueUnavailable, StatusUnavailable
from django_report_export.models import ReportExport, Status
from django_report_export.status import StatusStore

logger = logging.getLogger(__name__)

JOB_PATH = "django_report_export.runs.single.run_export"
SHARD_JOB_PATH = "django_report_export.runs.sharded.run_export_shard"
JOB_FAILED_PATH = "django_report_export.maintenance.job_failed"


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
