"""Acting on an export while it runs: a second thread waits for a row count, then acts."""

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
