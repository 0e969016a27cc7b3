"""The contract every format writer fulfils.

A writer turns rows into bytes, one chunk at a time, and holds no file: the export job owns
the file, so it can checkpoint, pause and continue on another worker. ``encode_rows`` is told
whether any row has been written before (``first``), which is all the state most formats need
to carry across a pause (a JSON comma, say); a writer that needs more (xlsx: sizes and CRC-32
of its zip) hands it to the checkpoint through ``checkpoint_state`` and gets it back in
``resume_state``. The bytes of an export are therefore the same however often it was paused
and resumed.

Rows are tuples of Python values in the order of ``columns``: ``None``, ``str``, ``int``,
``bool``, ``float``, ``Decimal``, aware ``datetime``, ``date``, ``time``, ``timedelta``,
``UUID`` and JSON values (``dict``/``list``) from ``JSONField``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain, repeat
from operator import itemgetter, setitem
from typing import Any, ClassVar

from django_report_export.options import FileOptions

Row = Sequence[Any]


class ChunkRows:
    """One chunk's rows as a reader fetched them, with some columns replaced by converted
    values; writers read it as rows, as columns or as records, whichever suits them.

    ``raw`` rows hold ``skip`` leading values that are not exported (a key the reader needed),
    then one value per column; ``replaced`` maps a column's position (among the exported
    columns) to the values that stand in that column instead of the raw ones. Nothing is
    copied until asked for, so a writer pays only for the shape it reads.
    """

    __slots__ = ("_columns", "_raw", "_raw_types", "_replaced", "_skip", "width")

    def __init__(
        self,
        raw: Sequence[Sequence[Any]],
        width: int,
        replaced: Mapping[int, list[Any]] | None = None,
        *,
        skip: int = 0,
        raw_types: Iterable[type] | None = None,
    ) -> None:
        self._raw = raw
        self.width = width
        self._replaced = dict(replaced or {})
        self._skip = skip
        self._columns: dict[int, list[Any]] = {}
        #: Types every raw value is one of, when the reader knows them without looking.
        self._raw_types = None if raw_types is None else frozenset(raw_types)

    def __len__(self) -> int:
        return len(self._raw)

    def replace(self, replaced: Mapping[int, list[Any]]) -> ChunkRows:
        """The same chunk with more columns replaced (this one is not changed)."""
        return ChunkRows(
            self._raw,
            self.width,
            {**self._replaced, **replaced},
            skip=self._skip,
            raw_types=self._raw_types,
        )

    def column(self, index: int) -> list[Any]:
        """The values of column ``index`` (a list the caller must not change)."""
        values = self._replaced.get(index)
        if values is None:
            values = self._columns.get(index)
            if values is None:
                values = list(map(itemgetter(index + self._skip), self._raw))
                self._columns[index] = values
        return values

    def values(self, index: int) -> Iterable[Any]:
        """The values of column ``index``, once, without keeping them."""
        values = self._replaced.get(index) or self._columns.get(index)
        if values is None:
            return map(itemgetter(index + self._skip), self._raw)
        return values

    def replaced(self) -> list[int]:
        """Positions of the replaced columns."""
        return list(self._replaced)

    def raw_types(self) -> set[type]:
        """The ``type()`` of every raw value: those of the columns not replaced, and more
        (the types the reader said its raw values have, when it did)."""
        if self._raw_types is not None:
            return set(self._raw_types)
        return set(map(type, chain.from_iterable(self._raw)))

    def columns(self) -> list[list[Any]]:
        return [self.column(index) for index in range(self.width)]

    def rows(self) -> Sequence[Row]:
        """The rows, each a sequence of one value per column."""
        if self._replaced:
            return list(zip(*self.columns(), strict=True)) if self.width else self._empty_rows()
        if self._skip:
            return list(map(itemgetter(slice(self._skip, None)), self._raw))
        return self._raw

    def records(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """One ``dict`` a row, ``names`` (one a column) as keys, in column order."""
        if len(set(names)) != len(names):
            return [dict(zip(names, row, strict=True)) for row in self.rows()]
        raw: Any = self._raw
        if self._skip:
            raw = map(itemgetter(slice(self._skip, None)), raw)
        # Copies of one dict with every key, then filled: no dict grows key by key.
        records = list(map(dict.copy, repeat(dict.fromkeys(names), len(self._raw))))
        deque(map(dict.update, records, map(zip, repeat(names), raw)), maxlen=0)
        for index, values in self._replaced.items():
            deque(map(setitem, records, repeat(names[index]), values), maxlen=0)
        return records

    def _empty_rows(self) -> list[tuple[()]]:
        return [()] * len(self._raw)


class FormatWriter:
    #: Name clients pass as ``format=``.
    name: ClassVar[str] = ""
    #: File name extension, without the dot.
    extension: ClassVar[str] = ""
    content_type: ClassVar[str] = "application/octet-stream"
    #: Whether an export may be written in shards, whose parts are joined with the bytes
    #: between two chunks (``shards.chunk_separator``); a writer whose chunks depend on what
    #: came before (a zip's offsets) says ``False`` and is always written as one.
    shardable: ClassVar[bool] = True
    #: Whether a run may read its first chunk shorter than the others (``FIRST_CHUNK_ROWS``,
    #: so that the first rows come sooner); ``False`` for a writer whose file the first chunk
    #: shapes (xlsx's column widths).
    short_first_chunk: ClassVar[bool] = True
    #: The export's file options; the run sets them on the writer it makes (the defaults of
    #: an export before options, for a writer made without them).
    options: FileOptions = FileOptions()

    def __init__(self, service: str, columns: Sequence[str]) -> None:
        self.service = service
        self.columns = list(columns)

    def header(self) -> bytes:
        """Bytes that open the file (a CSV header row, ``[``, an XML declaration and root)."""
        return b""

    def encode_rows(self, rows: Sequence[Row], *, first: bool) -> bytes:
        """Bytes for one chunk of rows; ``first`` is true when no row has been written yet."""
        raise NotImplementedError

    def encode_chunk(self, chunk: ChunkRows, *, first: bool) -> bytes:
        """Bytes for one chunk as a reader holds it: ``encode_rows`` of its rows. Writers that
        work column by column read its columns instead, without building its rows."""
        return self.encode_rows(chunk.rows(), first=first)

    def _rows_overridden(self, owner: type[FormatWriter]) -> bool:
        """Whether a subclass of ``owner`` changed ``encode_rows`` (so that ``encode_chunk``
        must go through it)."""
        return type(self).encode_rows is not owner.encode_rows

    def footer(self, *, empty: bool) -> bytes:
        """Bytes that close the file; ``empty`` is true when no row was written at all."""
        return b""

    def checkpoint_state(self, rows: int) -> Any:
        """What the writer must know, beyond ``first``, to go on after the first ``rows``
        rows it encoded (JSON, stored in the export's checkpoint); ``None``: nothing.

        The rows asked for may be a chunk fewer than encoded: a chunk read before a pause is
        not written."""
        return None

    def resume_state(self, state: Any) -> None:
        """Go on from a ``checkpoint_state`` (``None`` when the checkpoint has none)."""
