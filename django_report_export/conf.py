"""The ``REPORT_EXPORT`` settings dict, read through one object at use time.

    from django_report_export.conf import export_settings
    export_settings.CHUNK_SIZE

Values are looked up on every access (through a small cache that is cleared when
``settings.REPORT_EXPORT`` changes), so ``override_settings`` reaches every key.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTING_NAME = "REPORT_EXPORT"

DEFAULTS: dict[str, Any] = {
    # django-rq queue (a key of RQ_QUEUES) that export jobs are enqueued on.
    "QUEUE": "default",
    # Alias in settings.STORAGES holding finished files, parts and checkpoints.
    "STORAGE": "default",
    # Folder inside that storage under which every export file is written.
    "STORAGE_PREFIX": "report_export",
    # Rows read and written per chunk; progress, pause and cancel act between chunks.
    "CHUNK_SIZE": 5000,
    # Seconds between heartbeats of a running export.
    "HEARTBEAT_INTERVAL": 5,
    # Seconds without a heartbeat after which a running export's worker is taken as lost.
    "STALE_AFTER": 30,
    # Seconds to wait for a running export to acknowledge pause or cancel.
    "CANCEL_TIMEOUT": 10,
    # Seconds between durable checkpoints (part uploaded to storage, key saved in the database).
    "CHECKPOINT_INTERVAL": 10,
    # How many times an export whose worker was lost is continued before it is marked Error.
    "MAX_RETRIES": 3,
    # Finished files and records older than this many days are removed by the cleanup command.
    "RETENTION_DAYS": 30,
    # "service": one export slot per service; "user": one slot per service and user.
    "SLOT_SCOPE": "service",
    # Neutralise CSV cells a spreadsheet would run as a formula.
    "CSV_FORMULA_GUARD": True,
    # "stream": the download endpoint streams the file; "redirect": 302 to storage's URL.
    "DOWNLOAD": "stream",
    # HTTP status for an authenticated caller without the service's read permission.
    "PERMISSION_DENIED_STATUS": 401,
    "PERMISSION_CACHE_SECONDS": 5,  # a granted read permission is trusted this long (API)
    # Database alias the export queries read from (a read replica, say).
    "DATABASE_ALIAS": "default",
    # Socket timeout, in seconds, of every Redis call made by the API and the job.
    "REDIS_TIMEOUT": 2.0,
    # RQ job timeout, in seconds, of one run of an export (between start/resume and pause).
    "JOB_TIMEOUT": 86400,
    # Extra format writers: {"name": "dotted.path.WriterClass"}.
    "FORMATS": {},
    # On PostgreSQL, let the database write the built-in formats (COPY, string_agg): the same
    # bytes as the Python writers, several times faster. False: always the ORM reader.
    "FAST_PATH": True,
    # Exports of more rows than this are split into key-range shards run by parallel jobs
    # (ceil(rows / SHARD_ROWS) shards, at most MAX_SHARDS); None: only when asked for.
    "SHARD_ROWS": 1_000_000,
    # Most shards one export is split into, whoever asks.
    "MAX_SHARDS": 4,
}

CHOICES: dict[str, tuple[Any, ...]] = {
    "SLOT_SCOPE": ("service", "user"),
    "DOWNLOAD": ("stream", "redirect"),
    "PERMISSION_DENIED_STATUS": (401, 403),
}


class ExportSettings:
    """Attribute access to ``settings.REPORT_EXPORT`` with ``DEFAULTS`` filled in."""

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, SETTING_NAME, {})
        if not isinstance(value, dict):
            raise ImproperlyConfigured(f"settings.{SETTING_NAME} must be a dict.")
        return value

    def __getattr__(self, name: str) -> Any:
        """A setting's value, read once: kept as an instance attribute, so later reads (a few
        per status request) are plain attribute reads until ``reload``."""
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown {SETTING_NAME} setting: {name!r}")
        value = self.user_settings.get(name, DEFAULTS[name])
        allowed = CHOICES.get(name)
        if allowed and value not in allowed:
            raise ImproperlyConfigured(
                f"settings.{SETTING_NAME}[{name!r}] is {value!r}; expected one of {allowed}."
            )
        setattr(self, name, value)
        return value

    def reload(self) -> None:
        for name in DEFAULTS:
            self.__dict__.pop(name, None)


export_settings = ExportSettings()


@receiver(setting_changed)
def _reload_export_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        export_settings.reload()
