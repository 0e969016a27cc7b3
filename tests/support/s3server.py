"""An S3 server for the object-storage tests: moto's server mode in a process of its own, on a
free port of 127.0.0.1, with one bucket.

Worker processes reach it through the demo settings' ``exports`` storage, configured by the
``EXPORT_STORAGE_S3_*`` variables that ``S3Server.env()`` returns; the test process uses the
same settings through ``testproject.settings.s3_export_storage``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .net import S3_SERVER_PORTS, port_is_free, wait_for_http

PORTS = S3_SERVER_PORTS
#: Seconds a pre-signed URL of the S3 test storage stays valid.
S3_URL_EXPIRE = 120
ACCESS_KEY = "testing"
SECRET_KEY = "testing"  # moto accepts any key
REGION = "us-east-1"


class S3Server:
    """``python -m moto.server`` on 127.0.0.1; ``stop()`` ends it (all its buckets with it)."""

    def __init__(self, log: Path, bucket: str = "report-exports") -> None:
        self.log = log
        self.bucket = bucket
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.startup_seconds = 0.0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The variables that give the demo settings an ``exports`` storage in the bucket."""
        return {
            "EXPORT_STORAGE_S3_ENDPOINT": self.endpoint,
            "EXPORT_STORAGE_S3_BUCKET": self.bucket,
            "EXPORT_STORAGE_S3_REGION": REGION,
            "EXPORT_STORAGE_S3_ACCESS_KEY": ACCESS_KEY,
            "EXPORT_STORAGE_S3_SECRET_KEY": SECRET_KEY,
            **extra,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def start(self) -> S3Server:
        began = time.monotonic()
        ports = list(PORTS)
        random.shuffle(ports)
        for port in ports:
            if not port_is_free(port):
                continue
            self.port = port
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=self.log.open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            if self.wait_ready():
                self.client().create_bucket(Bucket=self.bucket)
                self.startup_seconds = time.monotonic() - began
                return self
            self.stop()
        raise RuntimeError(f"moto could not start on any port of {PORTS}: {self.output()}")

    def wait_ready(self, timeout: float = 30) -> bool:
        """True once the server answers HTTP; False if it exited (its port was taken)."""
        process = self.process
        assert process is not None
        return wait_for_http(self.port, "/moto-api/", lambda: process.poll() is None, timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    # --- the bucket ------------------------------------------------------------------------

    def keys(self, prefix: str = "") -> list[str]:
        """Every object name in the bucket under ``prefix``, sorted."""
        names: list[str] = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            names += [item["Key"] for item in page.get("Contents", [])]
        return sorted(names)

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def host(tmp_path: Path, name: str, s3_env: dict[str, str]) -> dict[str, str]:
    """The environment of a worker on a host of its own: empty media, export and temporary
    folders."""
    media, exports, tmp = (tmp_path / name / folder for folder in ("media", "exports", "tmp"))
    for folder in (media, exports, tmp):
        folder.mkdir(parents=True)
    return {
        **s3_env,
        "MEDIA_ROOT": str(media),
        "EXPORT_STORAGE_DIR": str(exports),
        "TMPDIR": str(tmp),
    }
