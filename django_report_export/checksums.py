"""The SHA-256 of a published file: computed once, as the file is published, and stored on
its ``ReportExport`` (the status body's ``sha256``, the download's ``ETag``), never per
download."""

from __future__ import annotations

import hashlib

from django.core.files.storage import Storage

BLOCK = 1024 * 1024


def file_sha256(storage: Storage, name: str) -> str:
    """The hex SHA-256 of the stored file ``name``, read once from the storage."""
    digest = hashlib.sha256()
    with storage.open(name, "rb") as stored:
        while block := stored.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()
