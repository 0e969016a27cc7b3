"""The SHA-256 of a published file: computed once, as the file is written or published, and
stored on its ``ReportExport`` (the status body's ``sha256``, the download's ``ETag``), never
per download."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from django.core.files.storage import Storage

if TYPE_CHECKING:
    from hashlib import _Hash

BLOCK = 1024 * 1024


def hashed(blocks: Iterable[bytes], digest: _Hash) -> Iterator[bytes]:
    """``blocks`` as they are, each added to ``digest`` as it passes."""
    for block in blocks:
        digest.update(block)
        yield block


def file_sha256(storage: Storage, name: str) -> str:
    """The hex SHA-256 of the stored file ``name``, read once from the storage."""
    digest = hashlib.sha256()
    with storage.open(name, "rb") as stored:
        while block := stored.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()
