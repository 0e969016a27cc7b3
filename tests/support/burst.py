"""Running queued export jobs in the test's own process."""

from __future__ import annotations

import django_rq
from rq import SimpleWorker

from django_report_export.conf import export_settings


class BurstWorker(SimpleWorker):
    """An in-process RQ worker without the pub/sub command channel, whose listener thread
    RQ joins with a one-second timeout at the end of every burst; no test sends commands."""

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


def run_worker() -> None:
    """Run every queued export job in this process, as a burst worker."""
    worker = django_rq.get_worker(export_settings.QUEUE, worker_class=BurstWorker)
    worker.work(burst=True)
