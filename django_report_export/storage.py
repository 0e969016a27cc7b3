"""Where export files live: parts while an export runs, one published file when it is done.

Everything goes through the Django storage named by ``STORAGE``, so a worker on another host
can continue an export from the parts and checkpoint another worker left. Storage backends
cannot append, so an export is written as a sequence of part objects, each ending on a chunk
boundary (a sharded export: a sequence per shard); publishing streams them, one after another
and gzip-compressed when asked, into the final name. The
file is only referenced by its ``ReportExport`` once it is complete.
"""

from __future__ import annotations

import contextlib
import gzip
import inspect
import io
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any, cast

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


def part_name(export: ReportExport, sequence: int, run: str, shard: int | None = None) -> str:
    prefix = "" if shard is None else f"s{shard:03d}-"
    return f"{export_folder(export)}/parts/{prefix}{sequence:05d}-{run}.part"


def final_name(export: ReportExport, extension: str) -> str:
    stamp = export.created_at.strftime("%Y%m%d-%H%M%S")
    suffix = COMPRESSIONS.get(export.compression, "")
    return f"{export_folder(export)}/{export.service}-{stamp}.{extension}{suffix}"


def save_part(storage: Storage, name: str, content: IO[bytes]) -> str:
    content.seek(0)
    return storage.save(name, File(content, name=name))


class PartSequence:
    """What one run has written: its parts in storage, those of the checkpoint it began from
    first, and the bytes written since the last part, in a temporary file."""

    def __init__(
        self, storage: Storage, export: ReportExport, token: str, shard: int | None = None
    ) -> None:
        self.storage = storage
        self.export = export
        self.token = token
        self.shard = shard
        self.names: list[str] = []
        #: The parts of the last durable checkpoint.
        self.saved: list[str] = []
        self.buffer: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115

    def resume(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self.saved = list(self.names)

    def write(self, data: bytes) -> None:
        self.buffer.write(data)

    def flush(self) -> None:
        """Store the bytes written since the last part as the next part."""
        if self.buffer.tell() == 0:
            return
        name = part_name(self.export, len(self.names), self.token, self.shard)
        self.names.append(save_part(self.storage, name, self.buffer))
        self.buffer.close()
        self.buffer = tempfile.TemporaryFile()  # noqa: SIM115

    def mark_saved(self) -> None:
        self.saved = list(self.names)

    def discard_unsaved(self) -> None:
        delete_quietly(self.storage, self.names[len(self.saved) :])

    def delete_all(self) -> None:
        delete_quietly(self.storage, self.names)

    def close(self) -> None:
        self.buffer.close()


#: What a file is assembled from: the names of stored parts, and literal bytes between them.
Piece = str | bytes


#: Storages known to save from a stream they can neither rewind nor size (by class path,
#: subclasses included); any other gets the file assembled in a temporary file first.
STREAMING_STORAGES = (
    "django.core.files.storage.filesystem.FileSystemStorage",
    "storages.backends.s3.S3Storage",
)


def publish(
    storage: Storage, pieces: Iterable[Piece], name: str, compression: str
) -> tuple[str, int]:
    """Write ``pieces`` one after another into the file ``name``; returns its stored name and
    size. On the storages that allow it the bytes stream from the parts into storage, never
    held whole in memory or on disk. A file left at ``name`` by a publish that was killed is
    replaced, and a publish that fails leaves nothing behind.
    """
    blocks = _compressed(_read_pieces(storage, pieces), compression)
    delete_quietly(storage, [name])  # only ever a half-written file of this same export
    try:
        if can_stream(storage):
            stream = StreamedFile(blocks)
            stored = storage.save(name, File(cast(IO[bytes], stream), name=name))
            return stored, stream.bytes_read
        with tempfile.TemporaryFile() as assembled:
            for block in blocks:
                assembled.write(block)
            size = assembled.tell()
            assembled.seek(0)
            return storage.save(name, File(assembled, name=name)), size
    except BaseException:
        delete_quietly(storage, [name])
        raise


def can_stream(storage: Storage) -> bool:
    paths = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(storage).__mro__}
    return not paths.isdisjoint(STREAMING_STORAGES)


def _read_pieces(storage: Storage, pieces: Iterable[Piece]) -> Iterator[bytes]:
    for piece in pieces:
        if isinstance(piece, bytes):
            yield piece
            continue
        with storage.open(piece, "rb") as source:
            while data := source.read(COPY_BUFFER):
                yield data


def _compressed(blocks: Iterator[bytes], compression: str) -> Iterator[bytes]:
    if compression != "gzip":
        yield from blocks
        return
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as sink:
        for data in blocks:
            sink.write(data)
            if buffer.tell() >= COPY_BUFFER:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


class StreamedFile(io.RawIOBase):
    """A read-only, unseekable file over an iterator of byte blocks, counting what it gives.

    It has no ``size``: Django's ``File.size`` must not mistake the count so far for one.
    """

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self.blocks = blocks
        self.block = memoryview(b"")
        self.offset = 0
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while self.offset >= len(self.block):
            block = next(self.blocks, None)
            if block is None:
                return 0
            self.block, self.offset = memoryview(block), 0
        count = min(len(target), len(self.block) - self.offset)
        target[:count] = self.block[self.offset : self.offset + count]
        self.offset += count
        self.bytes_read += count
        return count


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
