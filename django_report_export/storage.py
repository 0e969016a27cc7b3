"""Where export files live: parts while an export runs, one published file when it is done.

Everything goes through the Django storage named by ``STORAGE``, so a worker on another host
can continue an export from the parts and checkpoint another worker left. An export is
written as a sequence of parts, each ending on a chunk boundary (a sharded export: a sequence
per shard). Object storages cannot append, so there a run stores a new part at every
checkpoint; on a local disk a run appends to one part of its own and its checkpoints count
the bytes. Publishing streams the parts, one after another and gzip-compressed when asked,
into the final name, or, for the single part of an uninterrupted export on a local disk,
links it there; the file's SHA-256 is taken of the bytes as they pass, or, where they never
pass through Python (linked, or copied by the kernel), kept by the run as it wrote them. The
file is only referenced by its ``ReportExport`` once it is complete.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, NamedTuple, cast

from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages

from django_report_export.checksums import file_sha256, hashed
from django_report_export.conf import export_settings
from django_report_export.exceptions import ReportExportError
from django_report_export.models import ReportExport

if TYPE_CHECKING:
    from hashlib import _Hash

COPY_BUFFER = 1024 * 1024
COMPRESSIONS = {"gzip": ".gz"}


def get_storage() -> Storage:
    return storages[export_settings.STORAGE]


def export_folder(export: ReportExport) -> str:
    return f"{export_settings.STORAGE_PREFIX}/{export.service}/{export.pk}"


def part_name(export: ReportExport, sequence: int, run: str, shard: int | None = None) -> str:
    prefix = "" if shard is None else f"s{shard:03d}-"
    return f"{export_folder(export)}/parts/{prefix}{sequence:05d}-{run}.part"


def final_name(export: ReportExport, extension: str, run: str) -> str:
    """The published file's name: in a folder of the run that publishes it, so that a run
    which lost the export never writes over, nor deletes, the file of the run that took it."""
    stamp = export.created_at.strftime("%Y%m%d-%H%M%S")
    suffix = COMPRESSIONS.get(export.compression, "")
    return f"{export_folder(export)}/{run}/{export.service}-{stamp}.{extension}{suffix}"


def save_part(storage: Storage, name: str, content: IO[bytes]) -> str:
    content.seek(0)
    return storage.save(name, File(content, name=name))


@dataclass(frozen=True)
class Part:
    """A stored part, and how many of its first bytes belong to the export (``None``: all).

    A part written in place on a local disk may hold more bytes than its checkpoint counted:
    those of chunks its run wrote after the checkpoint, before it was stopped or lost.
    """

    name: str
    size: int | None = None


#: What a file is assembled from: stored parts, and literal bytes between them.
Piece = Part | bytes


def checkpoint_parts(checkpoint: dict[str, Any]) -> list[Part]:
    """The parts a checkpoint names (checkpoints without ``sizes`` count whole parts)."""
    names = checkpoint.get("parts", [])
    sizes = checkpoint.get("sizes") or [None] * len(names)
    return [Part(name, size) for name, size in zip(names, sizes, strict=True)]


def local_folder(storage: Storage) -> bool:
    """Whether ``storage`` is a plain ``FileSystemStorage``: its files can be appended to,
    linked and copied in place. A subclass that changes how files are saved, opened or found
    is treated like any other storage, so its own ways are never bypassed."""
    return isinstance(storage, FileSystemStorage) and all(
        getattr(type(storage), name) is getattr(FileSystemStorage, name)
        for name in ("save", "_save", "_open", "path")
    )


class PartSequence:
    """What one run has written: its parts in storage, those of the checkpoint it began from
    first.

    On a local disk (``local_folder``) the run writes straight into one part of its own,
    created in the storage, and a checkpoint records how many of its bytes are durable: an
    export that is never interrupted has a single part, which publishing links into place.
    On any other storage the bytes written since the last checkpoint wait in a temporary
    file and become the next part.

    A run that writes an export from its first byte (not a shard's run, nor one resumed from
    parts) keeps the SHA-256 of what it wrote (``digest``), which is then the published
    file's wherever its bytes do not pass through Python again.
    """

    def __init__(
        self, storage: Storage, export: ReportExport, token: str, shard: int | None = None
    ) -> None:
        self.storage = storage
        self.export = export
        self.token = token
        self.shard = shard
        self.in_place = local_folder(storage)
        self.parts: list[Part] = []
        #: The parts of the last durable checkpoint.
        self.saved: list[Part] = []
        #: In place: the part this run writes into, once it wrote a byte; else the bytes
        #: since the last part.
        self.file: IO[bytes] | None = None
        self.current = ""
        #: The SHA-256 of every byte written, while those are all the parts hold.
        self.digest: _Hash | None = hashlib.sha256() if shard is None else None

    @property
    def names(self) -> list[str]:
        return [part.name for part in self.parts]

    def checkpoint(self) -> dict[str, Any]:
        """The ``parts`` and ``sizes`` entries of a checkpoint."""
        return {"parts": self.names, "sizes": [part.size for part in self.parts]}

    def resume(self, parts: Iterable[Part]) -> None:
        self.parts = list(parts)
        self.saved = list(self.parts)
        if self.parts:
            self.digest = None  # the bytes of those parts were written by another run

    def write(self, data: bytes) -> None:
        if self.file is None:
            self.file = self.open_part() if self.in_place else tempfile.TemporaryFile()  # noqa: SIM115
        self.file.write(data)
        if self.digest is not None:
            self.digest.update(data)

    def open_part(self) -> IO[bytes]:
        """Create this run's part in the storage (its folder, name and permissions as the
        storage makes them) and open it for appending."""
        name = part_name(self.export, len(self.parts), self.token, self.shard)
        self.current = self.storage.save(name, ContentFile(b""))
        return open(self.storage.path(self.current), "ab")

    def flush(self) -> None:
        """Make the bytes written so far part of ``parts``: in place, the current part's
        size; else the temporary file stored as the next part."""
        if self.file is None:
            return
        if self.in_place:
            self.file.flush()
            part = Part(self.current, self.file.tell())
            if self.parts and self.parts[-1].name == self.current:
                self.parts[-1] = part
            else:
                self.parts.append(part)
            return
        size = self.file.tell()
        if size:
            name = part_name(self.export, len(self.parts), self.token, self.shard)
            self.parts.append(Part(save_part(self.storage, name, self.file), size))
        self.file.close()
        self.file = None

    def mark_saved(self) -> None:
        self.saved = list(self.parts)

    def discard_unsaved(self) -> None:
        saved = {part.name for part in self.saved}
        unsaved = [part.name for part in self.parts if part.name not in saved]
        if self.current and self.current not in saved:
            unsaved.append(self.current)
        self.close()
        delete_quietly(self.storage, unsaved)

    def delete_all(self) -> None:
        self.close()
        delete_quietly(self.storage, [*self.names, self.current])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


#: Storages known to save from a stream they can neither rewind nor size (by class path,
#: subclasses included); any other gets the file assembled in a temporary file first.
STREAMING_STORAGES = (
    "django.core.files.storage.filesystem.FileSystemStorage",
    "storages.backends.s3.S3Storage",
)


class Published(NamedTuple):
    """A published file: its stored name, size and hex SHA-256."""

    name: str
    size: int
    sha256: str


def publish(
    storage: Storage,
    pieces: Iterable[Piece],
    name: str,
    compression: str,
    digest: _Hash | None = None,
) -> Published:
    """Write ``pieces`` one after another into the file ``name``. ``name`` is the publishing
    run's own (``final_name``): nothing is ever deleted to make room for it. On the storages
    that allow it the bytes stream from the parts into storage, never held whole in memory or
    on disk. The file appears under ``name`` complete or not at all: on a local disk it is
    assembled under a name of its own and renamed into place; an object storage shows an
    upload only once it is complete. A publish that fails leaves nothing behind.

    ``digest`` is the SHA-256 of the pieces' bytes, if their writer kept it: where those bytes
    are stored as they are without passing through Python, the file is not read again for its
    own.
    """
    pieces = list(pieces)
    if local_folder(storage):
        return _publish_locally(storage, pieces, name, compression, digest)
    try:
        stored_digest = hashlib.sha256()
        blocks = hashed(_compressed(_read_pieces(storage, pieces), compression), stored_digest)
        if can_stream(storage):
            stream = StreamedFile(blocks)
            stored = storage.save(name, File(cast(IO[bytes], stream), name=name))
            return Published(stored, stream.bytes_read, stored_digest.hexdigest())
        with tempfile.TemporaryFile() as assembled:
            for block in blocks:
                assembled.write(block)
            size = assembled.tell()
            assembled.seek(0)
            stored = storage.save(name, File(assembled, name=name))
            return Published(stored, size, stored_digest.hexdigest())
    except BaseException:
        delete_quietly(storage, [name])
        raise


#: The suffix of a file being assembled on a local disk, before it is renamed into place.
ASSEMBLING = ".assembling"


def _publish_locally(
    storage: Storage, pieces: list[Piece], name: str, compression: str, digest: _Hash | None
) -> Published:
    # Saved through the storage, so that its folder and permissions are the storage's own.
    assembling = storage.save(name + ASSEMBLING, ContentFile(b""))
    try:
        if not compression and (size := _link(storage, pieces, name)) is not None:
            sha256 = digest.hexdigest() if digest else file_sha256(storage, name)
            return Published(name, size, sha256)
        with open(storage.path(assembling), "wb", buffering=0) as target:
            if compression:
                sha256 = _compress(storage, pieces, compression, target)
            else:
                sha256 = _join(storage, pieces, target, digest)
            size = target.tell()
        os.replace(storage.path(assembling), storage.path(name))
        return Published(name, size, sha256)
    finally:
        delete_quietly(storage, [assembling])


def _compress(storage: Storage, pieces: list[Piece], compression: str, target: IO[bytes]) -> str:
    """Write the pieces compressed into ``target``; the SHA-256 of what was written."""
    digest = hashlib.sha256()
    for block in hashed(_compressed(_read_pieces(storage, pieces), compression), digest):
        _write_all(target, block)
    return digest.hexdigest()


def _join(storage: Storage, pieces: list[Piece], target: IO[bytes], digest: _Hash | None) -> str:
    """Write the pieces one after another into ``target``; their SHA-256. Where the run that
    wrote them did not keep it (``digest``), their bytes are read and hashed in a thread of
    their own while the kernel copies them."""
    if digest is not None:
        _concatenate(storage, pieces, target)
        return digest.hexdigest()
    with ThreadPoolExecutor(max_workers=1) as hasher:
        hashing = hasher.submit(_pieces_sha256, storage, pieces)
        _concatenate(storage, pieces, target)
        return hashing.result()


def _pieces_sha256(storage: Storage, pieces: list[Piece]) -> str:
    """The SHA-256 of the pieces' bytes one after another (what publishing them writes)."""
    digest = hashlib.sha256()
    for block in _read_pieces(storage, pieces):
        digest.update(block)
    return digest.hexdigest()


def _link(storage: Storage, pieces: list[Piece], name: str) -> int | None:
    """Publish a single whole part as a second name of the same file (its size): no byte is
    copied, and the part stays whole until it is deleted like any other."""
    if len(pieces) != 1 or not isinstance(pieces[0], Part):
        return None
    part = pieces[0]
    source = storage.path(part.name)
    size = os.path.getsize(source)
    if part.size not in (None, size):
        return None
    try:
        os.link(source, storage.path(name))
    except OSError:  # a file system without hard links: copy instead
        return None
    return size


def _concatenate(storage: Storage, pieces: list[Piece], target: IO[bytes]) -> None:
    """The pieces copied one after another into ``target``, the parts by the kernel
    (``copy_file_range``): their bytes never pass through Python."""
    for piece in pieces:
        if isinstance(piece, bytes):
            _write_all(target, piece)
            continue
        with open(storage.path(piece.name), "rb", buffering=0) as source:
            _check_size(piece, _copy_range(source, target, piece.size))


def _copy_range(source: IO[bytes], target: IO[bytes], size: int | None) -> int:
    """Copy up to ``size`` bytes (``None``: all) from ``source`` to ``target``; the count."""
    copied = 0
    while size is None or copied < size:
        count = COPY_BUFFER * 64 if size is None else min(COPY_BUFFER * 64, size - copied)
        try:
            done = os.copy_file_range(source.fileno(), target.fileno(), count)
        except (AttributeError, OSError):  # not Linux, or a file system that refuses it
            done = _write_all(target, source.read(min(count, COPY_BUFFER)))
        if not done:
            break
        copied += done
    return copied


def _write_all(target: IO[bytes], data: bytes) -> int:
    """Write all of ``data`` to an unbuffered file (which may take less at a time)."""
    view = memoryview(data)
    while view:
        view = view[target.write(view) :]
    return len(data)


def can_stream(storage: Storage) -> bool:
    paths = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(storage).__mro__}
    return not paths.isdisjoint(STREAMING_STORAGES)


def _read_pieces(storage: Storage, pieces: Iterable[Piece]) -> Iterator[bytes]:
    for piece in pieces:
        if isinstance(piece, bytes):
            yield piece
            continue
        read = 0
        with storage.open(piece.name, "rb") as source:
            while piece.size is None or read < piece.size:
                wanted = COPY_BUFFER if piece.size is None else min(piece.size - read, COPY_BUFFER)
                data = source.read(wanted)
                if not data:
                    break
                read += len(data)
                yield data
        _check_size(piece, read)


def _check_size(part: Part, read: int) -> None:
    """A part must hold at least the bytes its checkpoint counted."""
    if part.size is not None and read < part.size:
        raise ReportExportError(
            f"The part {part.name} is {part.size - read} bytes shorter than its checkpoint counted."
        )


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


def stored_files(storage: Storage, folder: str) -> Iterator[str]:
    """The names of every file under ``folder``, its subfolders' included."""
    try:
        folders, files = storage.listdir(folder)
    except (FileNotFoundError, NotImplementedError, OSError):
        return
    for file in files:
        yield f"{folder}/{file}"
    for sub in folders:
        yield from stored_files(storage, f"{folder}/{sub}")


def delete_export_files(storage: Storage, export: ReportExport, keep: str = "") -> None:
    """Remove every file of ``export`` but ``keep``: the parts of all its runs, including
    those taken from a worker, the files of runs that lost it, and what a publish that was
    killed left behind."""
    names = [*stored_files(storage, export_folder(export)), *export.checkpoint.get("parts", [])]
    delete_quietly(storage, [name for name in names if name != keep])
