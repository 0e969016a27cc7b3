"""Where export files live: parts while an export runs, one published file when it is done.

Everything goes through the Django storage named by ``STORAGE``, so a worker on another host
can continue an export from the parts and checkpoint another worker left. Storage backends
cannot append, so an export is written as a sequence of part objects, each ending on a chunk
boundary; publishing concatenates them (gzip-compressing when asked) into the final name. The
file is only referenced by its ``ReportExport`` once it is complete.
"""

from __future__ import annotations

import contextlib
import gzip
import inspect
import shutil
import tempfile
from collections.abc import Iterable
from typing import IO, cast

from django.core.files import File
from django.core.files.storage import Storage, storages

from django_report_export.conf import export_settings
from django_report_export.models import ReportExport

COPY_BUFFER = 1024 * 1024
COMPRESSIONS = {"gzip": ".gz"}


def get_storage() -> Storage:
    return cast(Storage, storages[export_settings.STORAGE])


def export_folder(export: ReportExport) -> str:
    return f"{export_settings.STORAGE_PREFIX}/{export.service}/{export.pk}"


def part_name(export: ReportExport, sequence: int, run: str) -> str:
    return f"{export_folder(export)}/parts/{sequence:05d}-{run}.part"


def final_name(export: ReportExport, extension: str) -> str:
    stamp = export.created_at.strftime("%Y%m%d-%H%M%S")
    suffix = COMPRESSIONS.get(export.compression, "")
    return f"{export_folder(export)}/{export.service}-{stamp}.{extension}{suffix}"


def save_part(storage: Storage, name: str, content: IO[bytes]) -> str:
    content.seek(0)
    return storage.save(name, File(content, name=name))


def publish(storage: Storage, parts: Iterable[str], name: str, compression: str) -> tuple[str, int]:
    """Concatenate ``parts`` into the file ``name``; returns the stored name and its size."""
    with tempfile.TemporaryFile() as assembled:
        sink: IO[bytes] = assembled
        if compression == "gzip":
            sink = cast(IO[bytes], gzip.GzipFile(fileobj=assembled, mode="wb", mtime=0))
        for part in parts:
            with storage.open(part, "rb") as source:
                shutil.copyfileobj(source, sink, COPY_BUFFER)
        if sink is not assembled:
            sink.close()
        size = assembled.tell()
        assembled.seek(0)
        stored = storage.save(name, File(assembled, name=name))
    return stored, size


def delete_quietly(storage: Storage, names: Iterable[str]) -> None:
    for name in names:
        if name:
            with contextlib.suppress(OSError):
                storage.delete(name)


def delete_parts(storage: Storage, export: ReportExport) -> None:
    """Remove every part of ``export``, including those of runs that were taken from a worker."""
    folder = f"{export_folder(export)}/parts"
    try:
        _, files = storage.listdir(folder)
    except (FileNotFoundError, NotImplementedError, OSError):
        files = []
    delete_quietly(storage, [f"{folder}/{name}" for name in files])
    delete_quietly(storage, export.checkpoint.get("parts", []))


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
