"""The contract every format writer fulfils.

A writer turns rows into bytes, one chunk at a time, and holds no file: the export job owns
the file, so it can checkpoint, pause and continue on another worker. ``encode_rows`` is told
whether any row has been written before (``first``), which is all the state a format needs to
carry across a pause (a JSON comma, say); the bytes of an export are therefore the same however
often it was paused and resumed.

Rows are tuples of Python values in the order of ``columns``: ``None``, ``str``, ``int``,
``bool``, ``float``, ``Decimal``, aware ``datetime``, ``date``, ``time``, ``timedelta``,
``UUID`` and JSON values (``dict``/``list``) from ``JSONField``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

Row = Sequence[Any]


class FormatWriter:
    #: Name clients pass as ``format=``.
    name: ClassVar[str] = ""
    #: File name extension, without the dot.
    extension: ClassVar[str] = ""
    content_type: ClassVar[str] = "application/octet-stream"

    def __init__(self, service: str, columns: Sequence[str]) -> None:
        self.service = service
        self.columns = list(columns)

    def header(self) -> bytes:
        """Bytes that open the file (a CSV header row, ``[``, an XML declaration and root)."""
        return b""

    def encode_rows(self, rows: Sequence[Row], *, first: bool) -> bytes:
        """Bytes for one chunk of rows; ``first`` is true when no row has been written yet."""
        raise NotImplementedError

    def footer(self, *, empty: bool) -> bytes:
        """Bytes that close the file; ``empty`` is true when no row was written at all."""
        return b""
