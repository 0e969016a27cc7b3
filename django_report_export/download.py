"""How a finished export's file is handed out: one answer for the API's endpoint, the admin's
link and the management command, with the same file name, content type and headers.

``DOWNLOAD = "stream"`` serves the file through Django; ``"redirect"`` sends the caller to the
storage's URL, which is only safe when that URL is signed and expires (system check E009,
``signs_urls``): a permanent URL outlives the permission that was checked before it was given.
"""

from __future__ import annotations

import inspect
import os
from typing import IO

from django.core.files.storage import Storage
from django.http import HttpRequest, HttpResponseRedirect
from django.http.response import HttpResponseBase

from django_report_export.conf import export_settings
from django_report_export.exceptions import ExportFileGone
from django_report_export.formats import get_writer_class
from django_report_export.models import ReportExport
from django_report_export.ranges import file_response
from django_report_export.storage import get_storage

#: Storages whose URLs are signed and expire when their ``querystring_auth`` is on (by class
#: path, subclasses included).
QUERYSTRING_AUTH_STORAGES = ("storages.backends.s3.S3Storage",)

#: A storage class may declare that its ``url()`` is signed and expires by setting this
#: attribute to ``True`` (or that it is not, ``False``), whatever its class.
SIGNED_URLS_ATTRIBUTE = "report_export_signed_urls"


def signs_urls(storage: Storage) -> bool:
    """Whether ``storage.url()`` gives links that stop working after a while.

    Judged conservatively: a storage that declares it (``SIGNED_URLS_ATTRIBUTE``), or
    django-storages' S3 with ``querystring_auth``; any other (a ``FileSystemStorage`` under
    ``MEDIA_URL``, say) gives permanent links.
    """
    declared = getattr(storage, SIGNED_URLS_ATTRIBUTE, None)
    if declared is not None:
        return bool(declared)
    paths = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(storage).__mro__}
    if paths.isdisjoint(QUERYSTRING_AUTH_STORAGES):
        return False
    return bool(getattr(storage, "querystring_auth", False))


def filename(export: ReportExport) -> str:
    return os.path.basename(export.file_name)


def content_type(export: ReportExport) -> str:
    if export.compression:
        return "application/gzip"
    return get_writer_class(export.format).content_type


def open_file(export: ReportExport, storage: Storage | None = None) -> IO[bytes]:
    """The published file of a finished ``export``, opened for reading."""
    try:
        return (storage or get_storage()).open(export.file_name, "rb")
    except FileNotFoundError:
        raise ExportFileGone(service=export.service, export_id=export.pk) from None


def download_url(storage: Storage, name: str, filename: str, content_type: str) -> str:
    """The storage's URL for a published file; on object storage that can sign response
    headers (django-storages' S3), one that downloads as an attachment of ``content_type``."""
    if "parameters" not in inspect.signature(storage.url).parameters:
        return storage.url(name)
    headers = {
        "ResponseContentDisposition": f'attachment; filename="{filename}"',
        "ResponseContentType": content_type,
    }
    return storage.url(name, parameters=headers)  # type: ignore[call-arg]


def download_response(export: ReportExport, request: HttpRequest | None = None) -> HttpResponseBase:
    """The response that downloads a finished ``export``: a redirect to the storage's URL or
    the file itself, as an attachment, with its ``ETag`` and the ``Range`` of ``request``
    (``ranges``). Raises ``ExportFileGone`` when the file is missing."""
    storage = get_storage()
    name, kind = filename(export), content_type(export)
    if export_settings.DOWNLOAD == "redirect":
        # The storage answers ranges and sends its own ETag there.
        return HttpResponseRedirect(download_url(storage, export.file_name, name, kind))
    stored = open_file(export, storage)
    size = export.file_size if export.file_size is not None else storage.size(export.file_name)
    etag = f'"{export.sha256}"' if export.sha256 else None
    return file_response(request, stored, size=size, etag=etag, filename=name, content_type=kind)
