"""A real multi-process web server (gunicorn running ``testproject.wsgi``) and real
``rqworker`` processes for tests that drive the API over HTTP, pointed at this test run's
database, Redis and media folder like ``workers.py``."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from .net import HTTP_SERVER_PORTS, port_is_free, wait_for_http
from .workers import ROOT, WorkerProcess, worker_env

PORTS = HTTP_SERVER_PORTS
LIVE_SETTINGS = "tests.live_settings"


def live_env(extra_env: dict[str, str] | None = None, **report_export: Any) -> dict[str, str]:
    env = worker_env(**report_export)
    env.update(DJANGO_SETTINGS_MODULE=LIVE_SETTINGS, DJANGO_DEBUG="0")
    env.update(extra_env or {})
    return env


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class Process:
    """A child process in its own process group, its output appended to ``log``."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class LiveServer(Process):
    """gunicorn with ``workers`` sync worker processes on a free port of 127.0.0.1."""

    def __init__(
        self,
        log: Path,
        workers: int = 3,
        extra_env: dict[str, str] | None = None,
        **report_export: Any,
    ) -> None:
        env = live_env(extra_env, **report_export)
        last_error = ""
        for port in PORTS:
            if not port_is_free(port):
                continue
            args = [
                sys.executable,
                "-m",
                "gunicorn",
                "testproject.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--timeout",
                "120",
                "--graceful-timeout",
                "5",
                "--access-logfile",
                "-",
            ]
            super().__init__(args, log, env)
            self.port = port
            self.url = f"http://127.0.0.1:{port}"
            if self.wait_ready():
                return
            last_error = self.output()[-2000:]
            self.stop()
        raise RuntimeError(f"gunicorn could not start on any port of {PORTS}: {last_error}")

    def wait_ready(self, timeout: float = 30) -> bool:
        """True once a worker answers HTTP; False if gunicorn exited (port taken)."""
        return wait_for_http(self.port, "/api/schema/", self.alive, timeout, interval=0.1)

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def live_worker(log: Path, extra_env: dict[str, str] | None = None, **report_export: Any) -> Any:
    """A ``WorkerProcess`` with the live settings."""
    env = {"DJANGO_SETTINGS_MODULE": LIVE_SETTINGS, "DJANGO_DEBUG": "0", **(extra_env or {})}
    return WorkerProcess(log, env=env, **report_export)
