"""System checks: a broken setup is reported at start-up, naming what is wrong.

Each setting's rule and check id are in the table of settings (``conf.ExportSettings``).

- E001 ``QUEUE`` is not a queue of ``RQ_QUEUES``.
- E002 ``STORAGE`` is not an alias of ``STORAGES``.
- E003 a service's field path (or a path in a column's expression) does not resolve.
- E004 a service allows a format no writer handles.
- E005 a service declares no fields or no formats.
- E006 ``DATABASE_ALIAS`` is not a database of ``DATABASES``.
- E007 ``REPORT_EXPORT`` is not a dict, has an unknown key, or a value out of its range
  (``CHUNK_SIZE``, ``STALE_AFTER``, ``CANCEL_TIMEOUT``, ``SLOT_SCOPE``, ``DOWNLOAD``,
  ``PERMISSION_DENIED_STATUS``, ``PERMISSION_CACHE_SECONDS``, ``SHARD_ROWS``, ``MAX_SHARDS``,
  ``COUNT_ESTIMATE_ABOVE``).
- E008 a service's field path crosses a to-many relation, or a column's expression joins one
  (one record, many rows).
- E009 ``DOWNLOAD`` is ``"redirect"`` but the storage's URLs are not signed (they never expire).
- E010 ``HEARTBEAT_INTERVAL`` is not a number > 0.
- E011 ``CHECKPOINT_INTERVAL`` is not a number >= 0.
- E012 ``MAX_RETRIES`` is not an integer >= 0.
- E013 ``JOB_TIMEOUT`` is not an integer >= 1 (or -1, no timeout).
- E014 ``REDIS_TIMEOUT`` is not a number > 0.
- E015 ``RETENTION_DAYS`` is not an integer >= 0.
- E016 ``STALE_AFTER`` is not greater than ``HEARTBEAT_INTERVAL``.
- E017 ``CSV_DELIMITER`` is not one of ``","``, ``";"``, ``"\\t"``, ``"|"``.
- E018 ``CSV_BOM`` is not ``True`` or ``False``.
- E019 ``CSV_LINE_ENDING`` is not ``"lf"`` or ``"crlf"``.
- E020 ``CSV_DECIMAL_SEPARATOR`` is not ``"."`` or ``","``.
- E021 ``CSV_HEADER`` is not ``"names"``, ``"labels"`` or ``"none"``.
- E022 ``TIMEZONE`` is not an IANA time zone name.
- E026 ``WEBHOOKS`` is not a list of endpoints ``{"url", "secret", "events"}``.
- E027 ``NOTIFY_QUEUE`` is neither ``None`` nor a queue of ``RQ_QUEUES``.
- E028 ``WEBHOOK_TIMEOUT`` is not a number > 0.
- E029 ``WEBHOOK_RETRY_INTERVALS`` is not a list of whole seconds >= 0.
- E030 ``BASE_URL`` is neither ``""`` nor an http:// or https:// URL.
- E031 a service's ``webhooks`` or ``notify_emails`` are malformed.
- E032 a service's ``incremental_field`` does not resolve on its model or is not a
  ``DateTimeField``.
- E033 two columns of a service have one name.
- E034 a ``Column``'s name is not a plain name (``__`` in it, say).
- E035 a column's expression cannot be evaluated per row (an aggregate outside a
  ``Subquery``, a window, one that does not compile).
- E036 ``display=True`` on a field without choices.
- E037 a ``Nested`` path that is not a to-one relation, a ``Collection`` path that is not a
  reverse foreign key of the exported model, or a collection inside a nested entry.
- E038 a document service offers xlsx, or csv with a collection ``flatten`` does not name.
- W001 the export storage is a folder under ``MEDIA_ROOT``, which the web server serves.
- W002 webhooks or emails are configured but ``BASE_URL`` is not: their links are paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, Storage, storages

from django_report_export.column_checks import column_problems
from django_report_export.conf import (
    SETTING_NAME,
    SETTINGS,
    endpoint_problem,
    export_settings,
    is_number,
)
from django_report_export.download import SIGNED_URLS_ATTRIBUTE, signs_urls
from django_report_export.formats import format_names
from django_report_export.registry import site
from django_report_export.relations import TO_MANY_HINT
from django_report_export.windows import is_datetime_path

#: The tag of this package's checks: ``manage.py check --tag report_export`` runs them alone,
#: as ``manage.py report_export`` does before it acts.
TAG = "report_export"


def _error(message: str, number: int, obj: Any = None, hint: str | None = None) -> checks.Error:
    return checks.Error(message, hint=hint, obj=obj, id=f"django_report_export.E{number:03d}")


@checks.register(TAG)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Each ``REPORT_EXPORT`` value against its rule in the table of settings (``conf.py``)."""
    user_settings = getattr(settings, SETTING_NAME, {})
    if not isinstance(user_settings, dict):
        return [_error(f"settings.{SETTING_NAME} must be a dict.", 7)]
    errors: list[checks.CheckMessage] = [
        _error(
            f"settings.{SETTING_NAME} has an unknown key {key!r}.",
            7,
            hint=f"Known keys: {', '.join(sorted(SETTINGS))}.",
        )
        for key in user_settings
        if key not in SETTINGS
    ]
    for setting in SETTINGS.values():
        invalid = setting.problem(setting.read(user_settings))
        if invalid is not None and setting.check is not None:
            errors.append(_error(invalid.message, setting.check, hint=invalid.hint))
    errors.extend(_check_stale_after(user_settings))
    return errors


def _check_stale_after(user_settings: dict[str, Any]) -> list[checks.CheckMessage]:
    """E016: a worker is taken as lost only after it has missed a heartbeat."""
    stale_after = SETTINGS["STALE_AFTER"].read(user_settings)
    heartbeat = SETTINGS["HEARTBEAT_INTERVAL"].read(user_settings)
    if not (is_number(stale_after) and is_number(heartbeat)) or stale_after > heartbeat:
        return []
    return [
        _error(
            f"{SETTING_NAME}['STALE_AFTER'] ({stale_after!r}) must be greater than "
            f"HEARTBEAT_INTERVAL ({heartbeat!r}): a running export would be taken as lost "
            "between two of its heartbeats, and continued by a second worker.",
            16,
            hint="Keep STALE_AFTER several heartbeats long (the defaults: 5 and 30 seconds).",
        )
    ]


@checks.register(TAG)
def check_storage(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The export storage keeps its files private: redirects expire (E009), and the folder
    is not one the web server serves (W001)."""
    alias = export_settings.STORAGE
    if alias not in settings.STORAGES:
        return []  # E002
    storage = storages[alias]
    found: list[checks.CheckMessage] = []
    if _download_setting() == "redirect" and not signs_urls(storage):
        found.append(
            _error(
                f"{SETTING_NAME}['DOWNLOAD'] is 'redirect' but the URLs of storage {alias!r} "
                f"({type(storage).__qualname__}) are not signed: a download link would never "
                "expire and would outlive a revoked permission.",
                9,
                hint="Use DOWNLOAD 'stream', or a storage that signs its URLs (django-storages' "
                "S3Storage with querystring_auth=True, or a storage class that sets "
                f"{SIGNED_URLS_ATTRIBUTE} = True).",
            )
        )
    if under_media_root(storage):
        found.append(
            checks.Warning(
                f"{SETTING_NAME}['STORAGE'] is {alias!r}, a folder under MEDIA_ROOT: the web "
                "server serves it, so anyone holding an export's URL can fetch the file, "
                "whatever the service's permissions.",
                hint="Define a private storage alias in settings.STORAGES (a FileSystemStorage "
                "with its own location outside MEDIA_ROOT, or a private S3 bucket) and set "
                f"{SETTING_NAME}['STORAGE'] to it.",
                id="django_report_export.W001",
            )
        )
    return found


def _download_setting() -> Any:
    try:
        return export_settings.DOWNLOAD
    except ImproperlyConfigured:
        return None  # E007


def under_media_root(storage: Storage) -> bool:
    """Whether ``storage`` keeps its files in ``MEDIA_ROOT`` or a folder inside it.

    Judged by where the files are, not by ``base_url``: a ``FileSystemStorage`` without one
    falls back to ``MEDIA_URL`` wherever its files are.
    """
    if not isinstance(storage, FileSystemStorage) or not settings.MEDIA_ROOT:
        return False
    location = Path(storage.location).resolve()
    return location.is_relative_to(Path(settings.MEDIA_ROOT).resolve())


@checks.register(TAG)
def check_services(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    known_formats = format_names()
    for service in site:
        label = f"export service {service.name!r} ({type(service).__qualname__})"
        if not service.fields:
            errors.append(_error(f"{label} declares no fields.", 5, obj=type(service)))
        if not service.formats:
            errors.append(_error(f"{label} declares no formats.", 5, obj=type(service)))
        for check_id, problem in column_problems(service):
            hint = TO_MANY_HINT if check_id == 8 else None
            errors.append(_error(f"{label}: {problem}.", check_id, obj=type(service), hint=hint))
        errors.extend(_check_notifications(service, label))
        errors.extend(_check_incremental_field(service, label))
        for name in service.formats:
            if name not in known_formats:
                errors.append(
                    _error(
                        f"{label}: no writer handles format {name!r}.",
                        4,
                        obj=type(service),
                        hint=f"Known formats: {', '.join(known_formats)}.",
                    )
                )
    return errors


def _check_notifications(service: Any, label: str) -> list[checks.CheckMessage]:
    """E031: a service's ``webhooks`` and ``notify_emails``."""
    errors: list[checks.CheckMessage] = []
    webhooks = service.webhooks
    problems = (
        [endpoint_problem(endpoint) for endpoint in webhooks]
        if isinstance(webhooks, list | tuple)
        else ["'webhooks' must be a list of endpoints"]
    )
    for problem in filter(None, problems):
        errors.append(_error(f"{label}: {problem}.", 31, obj=type(service)))
    emails = service.notify_emails
    if isinstance(emails, str) or not all(isinstance(a, str) and "@" in a for a in emails):
        message = f"{label}: 'notify_emails' must be a list of email addresses."
        errors.append(_error(message, 31, obj=type(service)))
    return errors


def _check_incremental_field(service: Any, label: str) -> list[checks.CheckMessage]:
    """E032: a window is of a ``DateTimeField`` of the model."""
    path = service.incremental_field
    if path is None:
        return []
    try:
        if isinstance(path, str) and path and is_datetime_path(service, path):
            return []
    except FieldDoesNotExist:
        message = (
            f"{label}: incremental_field {path!r} does not resolve on {service.model._meta.label}."
        )
        return [_error(message, 32, obj=type(service))]
    message = f"{label}: incremental_field {path!r} is not a DateTimeField."
    return [_error(message, 32, obj=type(service), hint="Name a DateTimeField path, or None.")]


@checks.register(TAG)
def check_base_url(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W002: a webhook or an email sent from a job has no request to take the host from."""
    try:
        if export_settings.BASE_URL:
            return []
        configured = bool(export_settings.WEBHOOKS) or any(
            service.webhooks or service.notify_emails for service in site
        )
    except ImproperlyConfigured:
        return []  # E007
    if not configured:
        return []
    return [
        checks.Warning(
            f"Webhooks or notification emails are configured, but settings.{SETTING_NAME}"
            "['BASE_URL'] is not: their download links are paths without a host.",
            hint='Set REPORT_EXPORT["BASE_URL"] = "https://shop.example".',
            id="django_report_export.W002",
        )
    ]
