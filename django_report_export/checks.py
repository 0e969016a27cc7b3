"""System checks: a broken setup is reported at start-up, naming what is wrong.

- E001 ``QUEUE`` is not a queue of ``RQ_QUEUES``.
- E002 ``STORAGE`` is not an alias of ``STORAGES``.
- E003 a service's field path does not resolve on its model.
- E004 a service allows a format no writer handles.
- E005 a service declares no fields or no formats.
- E006 ``DATABASE_ALIAS`` is not a database of ``DATABASES``.
- E007 a ``REPORT_EXPORT`` value is invalid (unknown key, or a value out of its range).
- E008 a service's field path crosses a to-many relation (one record, many rows).
- E009 ``DOWNLOAD`` is ``"redirect"`` but the storage's URLs are not signed (they never expire).
- W001 the export storage is a folder under ``MEDIA_ROOT``, which the web server serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, Storage, storages

from django_report_export.conf import DEFAULTS, SETTING_NAME, export_settings
from django_report_export.download import SIGNED_URLS_ATTRIBUTE, signs_urls
from django_report_export.registry import resolve_field_path, site
from django_report_export.relations import TO_MANY_HINT, to_many_reason, to_many_step


def _error(message: str, number: int, obj: Any = None, hint: str | None = None) -> checks.Error:
    return checks.Error(message, hint=hint, obj=obj, id=f"django_report_export.E{number:03d}")


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    user_settings = getattr(settings, SETTING_NAME, {})
    if not isinstance(user_settings, dict):
        return [_error(f"settings.{SETTING_NAME} must be a dict.", 7)]
    for key in user_settings:
        if key not in DEFAULTS:
            errors.append(
                _error(
                    f"settings.{SETTING_NAME} has an unknown key {key!r}.",
                    7,
                    hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                )
            )
    for key in DEFAULTS:
        try:
            getattr(export_settings, key)
        except ImproperlyConfigured as exc:
            errors.append(_error(str(exc), 7))
    queues = getattr(settings, "RQ_QUEUES", {})
    if export_settings.QUEUE not in queues:
        errors.append(
            _error(
                f"{SETTING_NAME}['QUEUE'] is {export_settings.QUEUE!r}, "
                "which is not a queue of settings.RQ_QUEUES.",
                1,
                hint=f"Queues: {', '.join(queues) or 'none'}.",
            )
        )
    if export_settings.STORAGE not in settings.STORAGES:
        errors.append(
            _error(
                f"{SETTING_NAME}['STORAGE'] is {export_settings.STORAGE!r}, "
                "which is not an alias of settings.STORAGES.",
                2,
            )
        )
    if export_settings.DATABASE_ALIAS not in settings.DATABASES:
        errors.append(
            _error(
                f"{SETTING_NAME}['DATABASE_ALIAS'] is {export_settings.DATABASE_ALIAS!r}, "
                "which is not a database of settings.DATABASES.",
                6,
            )
        )
    for name, key in (
        ("CHUNK_SIZE", 1),
        ("CANCEL_TIMEOUT", 0),
        ("STALE_AFTER", 0),
        ("PERMISSION_CACHE_SECONDS", 0),
    ):
        value = getattr(export_settings, name)
        if not isinstance(value, int | float) or value < key or value is True:
            errors.append(_error(f"{SETTING_NAME}[{name!r}] must be a number >= {key}.", 7))
    shard_rows, max_shards = export_settings.SHARD_ROWS, export_settings.MAX_SHARDS
    if shard_rows is not None and (not _is_int(shard_rows) or shard_rows < 1):
        errors.append(_error(f"{SETTING_NAME}['SHARD_ROWS'] must be None or an integer >= 1.", 7))
    if not _is_int(max_shards) or max_shards < 1:
        errors.append(_error(f"{SETTING_NAME}['MAX_SHARDS'] must be an integer >= 1.", 7))
    return errors


@checks.register()
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@checks.register()
def check_services(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django_report_export.formats import format_names

    errors: list[checks.CheckMessage] = []
    known_formats = format_names()
    for service in site:
        label = f"export service {service.name!r} ({type(service).__qualname__})"
        if not service.fields:
            errors.append(_error(f"{label} declares no fields.", 5, obj=type(service)))
        if not service.formats:
            errors.append(_error(f"{label} declares no formats.", 5, obj=type(service)))
        for path in service.fields:
            try:
                resolve_field_path(service.model, path)
            except FieldDoesNotExist:
                errors.append(
                    _error(
                        f"{label}: field {path!r} does not resolve on {service.model._meta.label}.",
                        3,
                        obj=type(service),
                    )
                )
                continue
            step = to_many_step(service.model, path)
            if step is not None:
                errors.append(
                    _error(
                        f"{label}: field {path!r} {to_many_reason(service, step)}",
                        8,
                        obj=type(service),
                        hint=TO_MANY_HINT,
                    )
                )
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
