"""Real ``rqworker`` processes for end-to-end tests, pointed at this test run's database,
Redis and media folder."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

#: The repository: the working directory of the processes tests start.
ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    if db["ENGINE"].endswith("mysql"):
        return f"mysql://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}/{db['NAME']}"
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def worker_env(**report_export: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.live_settings",  # the demo shop and orderRow
        DATABASE_URL=database_url(),
        REDIS_URL=settings.RQ_QUEUES["default"]["URL"],
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        **export_storage_dir(),
        REPORT_EXPORT_SETTINGS=json.dumps({**settings.REPORT_EXPORT, **report_export}),
        PYTHONUNBUFFERED="1",
    )
    return env


def export_storage_dir() -> dict[str, str]:
    """``EXPORT_STORAGE_DIR``: the folder of this process's ``exports`` storage, if a folder."""
    location = settings.STORAGES.get("exports", {}).get("OPTIONS", {}).get("location")
    return {"EXPORT_STORAGE_DIR": str(location)} if location else {}


class WorkerProcess:
    """``manage.py rqworker`` in its own process (and process group)."""

    def __init__(
        self,
        log: Path,
        burst: bool = False,
        env: dict[str, str] | None = None,
        **report_export: Any,
    ) -> None:
        args = [sys.executable, "manage.py", "rqworker", "default", "--name", log.stem]
        if burst:
            args.append("--burst")
        self.log = log
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**worker_env(**report_export), **(env or {})},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the worker and its work horse: a lost host, as far as anyone can tell.

        RQ starts each work horse in a session of its own, so the horse is found by parent.
        """
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def descendants(pid: int) -> list[int]:
    """Process ids of every descendant of ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def wait_for(predicate: Any, timeout: float = 60, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
