"""Acting on an export while it runs: a second thread waits for a row count, then acts; or,
where the row count must be exact, the run itself acts once it has written that many rows."""

from __future__ import annotations

import threading
import time
from typing import Any


class Poller(threading.Thread):
    """Calls ``action`` from another thread once the slot has processed ``at_least`` rows.

    The export meanwhile runs in this thread in a burst worker; ``action`` is what a second
    API client would do mid-export (pause, cancel, start). Its result or error is kept.
    """

    def __init__(self, service: str, at_least: int, action: Any) -> None:
        super().__init__(daemon=True)
        self.service, self.at_least, self.action = service, at_least, action
        self.result: Any = None
        self.error: BaseException | None = None
        self.seen: list[int] = []

    def run(self) -> None:
        from django.db import connection

        from django_report_export import control
        from django_report_export.registry import site

        service = site.get(self.service)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = control.get_status(service)
                self.seen.append(int(status["status"]))
                if status["status"] == 2 and (status["processed"] or 0) >= self.at_least:
                    self.result = self.action(service)
                    return
                time.sleep(0.002)
            raise AssertionError(f"{self.service} never reached {self.at_least} rows")
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()


def while_running(service: str, at_least: int, action: Any) -> Poller:
    poller = Poller(service, at_least, action)
    poller.start()
    return poller


def once_written(monkeypatch: Any, service: str, rows: int, action: Any) -> Poller:
    """Calls ``action`` from another thread once an export's run has written ``rows`` rows,
    holding the run there until the slot has the request ``action`` makes (a pause or a
    cancel, which ``action`` then waits for the run to acknowledge): the run stops before its
    next chunk, however loaded the machine. A poller racing the run may see the count only
    after the last row. Join the returned thread for ``action``'s result or error."""
    from django_report_export.connection import get_redis
    from django_report_export.runs.single import ExportRun
    from django_report_export.status import StatusStore

    poller = Poller(service, 0, action)  # started once the rows are written
    chunk_written = ExportRun.chunk_written

    def acting(run: ExportRun) -> None:
        if poller.ident is None and run.processed >= rows:
            poller.start()
            store = StatusStore(get_redis())
            deadline = time.monotonic() + 60
            while not (store.read(run.slot) or {}).get("request"):
                if not poller.is_alive() or time.monotonic() > deadline:
                    break
                time.sleep(0.002)
        chunk_written(run)

    monkeypatch.setattr(ExportRun, "chunk_written", acting)
    return poller


def paused_and_resumed(api: Any, worker: Any, service: str, query: str, at_least: int) -> Any:
    """Start ``service`` with ``query``, pause it from another thread once ``at_least`` rows
    are processed, resume it and run it to the end: the rows processed when it paused, and
    the downloaded file. On a loaded machine the pause may land after the last row, before
    the file is published: a pause all the same, which resume must finish alike."""
    from django_report_export import control
    from django_report_export.models import ReportExport, Status

    assert api.post(f"/api/report/{service}/start?{query}").status_code == 202
    poller = while_running(service, at_least, control.pause)
    worker()
    poller.join()
    assert poller.error is None
    paused_at = ReportExport.objects.get(status=Status.PAUSED).checkpoint["processed"]
    assert api.post(f"/api/report/{service}/resume").status_code == 200
    worker()
    response = api.get(f"/api/report/{service}/download")
    return paused_at, b"".join(response.streaming_content)
