"""xlsx: an Office Open XML workbook, its sheet XML streamed chunk by chunk into the zip.

The writer builds the workbook itself rather than through xlsxwriter or openpyxl: both keep
a half-written workbook in the memory (or the temporary files) of one process, so a paused
export or a killed worker's continuation could not go on with it elsewhere. Here every chunk
is a self-contained piece of the sheet's deflate stream: compressed by a fresh raw-deflate
compressor and ended with a sync flush, so the bytes of a chunk depend only on its rows and
the file is byte-identical however often the export was paused and resumed. What the
workbook needs at its end (the CRC-32 and sizes of each sheet, the column widths, the rows
on the current sheet) is the writer's checkpoint state (``checkpoint_state``), a few numbers
the export's checkpoint carries to the next run. The zip's timestamps are fixed (1980-01-01),
so the same rows give the same bytes.

The sheet: a bold, frozen header row of the column names; column widths from the first
chunk's texts; numbers and decimals as numbers, booleans as booleans, dates, datetimes and
times as Excel serial numbers with a date or time format, text as inline strings, ``None`` as
an empty cell. A sheet holds at most ``SHEET_ROWS`` rows (Excel's limit, the header row
included); the rows after them continue on another sheet, which repeats the header row.

The workbook is not sharded: its chunks are not a prefix plus one row format
(``shardable``), so an export asked for in shards is written as one.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

from django_report_export.formats.base import ChunkRows, FormatWriter, Row
from django_report_export.formats.values import (
    check_width,
)
from django_report_export.formats.xlsx_cells import header_cell, rows_xml, width
from django_report_export.formats.xml import escape_text
from django_report_export.formats.zip_records import (
    DATA_DESCRIPTOR,
    Entry,
    central_record,
    data_descriptor,
    deflate,
    end_records,
    local_header,
    new_compressor,
)

#: Rows of a sheet, its header row included (Excel's limit); a module constant so that tests
#: can see the continuation on a second sheet without a million rows.
SHEET_ROWS = 1_048_576

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

_SHEET_START = (
    f'{_XML_DECLARATION}<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}">'
    '<sheetViews><sheetView workbookViewId="0">'
    '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
    '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
    "</sheetView></sheetViews>"
    '<sheetFormatPr defaultRowHeight="15"/>'
)
_SHEET_END = "</sheetData></worksheet>"

#: The cell styles ``xlsx_cells`` names by index (``BOLD``, ``DATE``, ``DATETIME``, ``TIME``).
_STYLES = (
    f'{_XML_DECLARATION}<styleSheet xmlns="{_MAIN}">'
    '<numFmts count="3"><numFmt numFmtId="164" formatCode="yyyy\\-mm\\-dd"/>'
    '<numFmt numFmtId="165" formatCode="yyyy\\-mm\\-dd\\ hh:mm:ss"/>'
    '<numFmt numFmtId="166" formatCode="hh:mm:ss;@"/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="5"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="166" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)


@dataclass
class _State:
    """What the writer has written so far: all a later chunk and the end of the file need."""

    #: Bytes of the file so far.
    written: int = 0
    #: The finished entries (sheets that reached ``SHEET_ROWS``).
    entries: list[Entry] = field(default_factory=list)
    #: The sheet being written: offset of its local header, CRC-32 and sizes of its XML.
    offset: int = 0
    crc: int = 0
    compressed: int = 0
    size: int = 0
    #: Rows on the sheet being written, its header row included (0: its data not begun).
    sheet_rows: int = 0
    #: Column widths, set by the first chunk (``None``: no chunk written yet).
    widths: list[float] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _State:
        entries = [Entry(**entry) for entry in data.get("entries", [])]
        return cls(**{**data, "entries": entries})


# --- the writer ----------------------------------------------------------------------------


class XLSXWriter(FormatWriter):
    name = "xlsx"
    extension = "xlsx"
    content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    shardable = False
    short_first_chunk = False  # The first chunk sets the column widths.

    def __init__(self, service: str, columns: Sequence[str]) -> None:
        super().__init__(service, columns)
        self._state = _State()
        #: The state after each of the last chunks, by the rows written until then: the
        #: export checkpoints the rows it wrote, which may be a chunk fewer than encoded.
        self._states: dict[int, dict[str, Any]] = {0: self._state.to_json()}
        self._data_rows = 0

    # --- checkpoint state ----------------------------------------------------------------

    def checkpoint_state(self, rows: int) -> dict[str, Any]:
        state = self._states.get(rows)
        if state is None:
            raise RuntimeError(f"The xlsx writer has no state after {rows} rows.")
        return {"rows": rows, **state}

    def resume_state(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        state = dict(state)
        self._data_rows = state.pop("rows")
        self._state = _State.from_json(state)
        self._states = {self._data_rows: self._state.to_json()}

    def _remember(self) -> None:
        previous = max(self._states)
        self._states = {previous: self._states[previous], self._data_rows: self._state.to_json()}

    # --- bytes ---------------------------------------------------------------------------

    def header(self) -> bytes:
        self._state = _State()
        self._data_rows = 0
        data = self._open_sheet()
        self._states = {0: self._state.to_json()}
        return data

    def encode_rows(self, rows: Sequence[Row], *, first: bool) -> bytes:
        if not rows:
            return b""
        check_width(rows, len(self.columns))
        return self.encode_chunk(ChunkRows(rows, len(self.columns)), first=first)

    def encode_chunk(self, chunk: ChunkRows, *, first: bool) -> bytes:
        if self._rows_overridden(XLSXWriter):
            return super().encode_chunk(chunk, first=first)
        if not len(chunk):
            return b""
        columns = chunk.columns()
        if self._state.widths is None:
            self._state.widths = [
                width(column, name) for column, name in zip(columns, self.headers, strict=True)
            ]
        pieces: list[bytes] = []
        start, count = 0, len(chunk)
        while start < count:
            if self._state.sheet_rows == SHEET_ROWS:
                pieces += [self._close_sheet(), self._open_sheet()]
            if not self._state.sheet_rows:
                pieces.append(self._sheet_data_start())
            stop = min(count, start + SHEET_ROWS - self._state.sheet_rows)
            pieces.append(self._sheet_xml(rows_xml(columns, start, stop)))
            self._state.sheet_rows += stop - start
            start = stop
        self._data_rows += len(chunk)
        self._remember()
        return b"".join(pieces)

    @property
    def headers(self) -> list[str]:
        """The header row: the columns' declared labels, resolved at the start and recorded
        in the options (``Column(label=...)``), else their names."""
        labels = self.options.labels
        if labels is not None and len(labels) == len(self.columns):
            return list(labels)
        return self.columns

    @property
    def widths(self) -> list[float] | None:
        """The column widths, ``None`` until the first chunk sets them."""
        return self._state.widths

    @widths.setter
    def widths(self, widths: list[float]) -> None:
        self._state.widths = list(widths)

    def encode_sheet_rows(self, xml: bytes, count: int) -> bytes:
        """Bytes for one chunk whose ``count`` rows a reader wrote as ``<row>`` elements
        (``xml``, UTF-8), as ``encode_chunk`` writes them; ``widths`` must be set."""
        pieces: list[bytes] = []
        start = 0
        while count:
            if self._state.sheet_rows == SHEET_ROWS:
                pieces += [self._close_sheet(), self._open_sheet()]
            if not self._state.sheet_rows:
                pieces.append(self._sheet_data_start())
            rows = min(count, SHEET_ROWS - self._state.sheet_rows)
            stop = len(xml) if rows == count else _after_rows(xml, start, rows)
            pieces.append(self._sheet_xml([memoryview(xml)[start:stop]]))
            self._state.sheet_rows += rows
            self._data_rows += rows
            start, count = stop, count - rows
        self._remember()
        return b"".join(pieces)

    def footer(self, *, empty: bool) -> bytes:
        state = self._state
        if state.widths is None:
            state.widths = [width([], name) for name in self.headers]
        pieces = [self._sheet_data_start()] if not state.sheet_rows else []
        pieces.append(self._close_sheet())
        pieces.append(self._package())
        return b"".join(pieces)

    # --- sheets --------------------------------------------------------------------------

    def _sheet_name(self, index: int) -> str:
        return f"xl/worksheets/sheet{index}.xml"

    def _open_sheet(self) -> bytes:
        """The local header of the next sheet, and its XML up to its columns."""
        state = self._state
        header = local_header(self._sheet_name(len(state.entries) + 1), DATA_DESCRIPTOR)
        state.offset = state.written
        state.crc = state.compressed = state.size = state.sheet_rows = 0
        state.written += len(header)
        return header + self._sheet_xml(_SHEET_START)

    def _sheet_data_start(self) -> bytes:
        """The columns' widths, then the header row, which opens a sheet's data."""
        assert self._state.widths is not None
        cols = "".join(
            f'<col min="{index}" max="{index}" width="{width}" customWidth="1"/>'
            for index, width in enumerate(self._state.widths, start=1)
        )
        header = "".join(map(header_cell, self.headers))
        self._state.sheet_rows = 1
        return self._sheet_xml(
            f"{f'<cols>{cols}</cols>' if cols else ''}<sheetData><row>{header}</row>"
        )

    def _sheet_xml(
        self, xml: str | Iterable[str] | Iterable[memoryview], *, last: bool = False
    ) -> bytes:
        """The next piece of the sheet's deflate stream: ``xml`` (texts or UTF-8 one after
        another), ended by a sync flush, or by the stream's end when ``last``."""
        state = self._state
        compressor = new_compressor()
        compressed = []
        for text in [xml] if isinstance(xml, str) else xml:
            data = text if isinstance(text, memoryview) else text.encode()
            state.crc = zlib.crc32(data, state.crc)
            state.size += len(data)
            compressed.append(compressor.compress(data))
        compressed.append(compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
        piece = b"".join(compressed)
        state.compressed += len(piece)
        state.written += len(piece)
        return piece

    def _close_sheet(self) -> bytes:
        """The end of the sheet's XML and its data descriptor."""
        state = self._state
        data = self._sheet_xml(_SHEET_END, last=True)
        descriptor = data_descriptor(state.crc, state.compressed, state.size)
        state.entries.append(
            Entry(
                self._sheet_name(len(state.entries) + 1),
                state.offset,
                state.crc,
                state.compressed,
                state.size,
                DATA_DESCRIPTOR,
            )
        )
        state.written += len(descriptor)
        return data + descriptor

    # --- the rest of the package ---------------------------------------------------------

    def _package(self) -> bytes:
        """The workbook's small parts, then the central directory."""
        state = self._state
        pieces = []
        for name, xml in self._parts(len(state.entries)):
            data = xml.encode()
            compressed = deflate(data)
            entry = Entry(name, state.written, zlib.crc32(data), len(compressed), len(data))
            local = local_header(name, 0, entry.crc, entry.compressed, entry.size)
            pieces += [local, compressed]
            state.written += len(local) + len(compressed)
            state.entries.append(entry)
        directory = b"".join(map(central_record, state.entries))
        pieces += [directory, end_records(len(state.entries), len(directory), state.written)]
        return b"".join(pieces)

    def _parts(self, sheets: int) -> list[tuple[str, str]]:
        numbers = range(1, sheets + 1)
        sheet_types = "".join(
            f'<Override PartName="/{self._sheet_name(number)}" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            for number in numbers
        )
        content_types = (
            f"{_XML_DECLARATION}"
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            f"{sheet_types}"
            '<Override PartName="/xl/styles.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>'
        )
        root_rels = (
            f'{_XML_DECLARATION}<Relationships xmlns="{_PKG_REL}">'
            f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>"
        )
        sheets_xml = "".join(
            f'<sheet name="{escape_text(self._title(number))}" sheetId="{number}" '
            f'r:id="rId{number}"/>'
            for number in numbers
        )
        workbook = (
            f'{_XML_DECLARATION}<workbook xmlns="{_MAIN}" xmlns:r="{_REL}">'
            f"<sheets>{sheets_xml}</sheets></workbook>"
        )
        workbook_rels = (
            f'{_XML_DECLARATION}<Relationships xmlns="{_PKG_REL}">'
            + "".join(
                f'<Relationship Id="rId{number}" Type="{_REL}/worksheet" '
                f'Target="worksheets/sheet{number}.xml"/>'
                for number in numbers
            )
            + f'<Relationship Id="rId{sheets + 1}" Type="{_REL}/styles" Target="styles.xml"/>'
            "</Relationships>"
        )
        return [
            ("[Content_Types].xml", content_types),
            ("_rels/.rels", root_rels),
            ("xl/workbook.xml", workbook),
            ("xl/_rels/workbook.xml.rels", workbook_rels),
            ("xl/styles.xml", _STYLES),
        ]

    def _title(self, number: int) -> str:
        """The sheet's tab: the service's name (Excel's 31 characters, none of ``[]:*?/\\``),
        numbered from the second sheet on."""
        suffix = f" ({number})" if number > 1 else ""
        base = re.sub(r"[\[\]:*?/\\]", "_", self.service).strip("'") or "export"
        return "".join(islice(base, 31 - len(suffix))) + suffix


def _after_rows(xml: bytes, start: int, rows: int) -> int:
    """The offset after the ``rows``-th ``</row>`` from ``start`` (no text holds one: its
    ``<`` is escaped)."""
    end = start
    for _ in range(rows):
        end = xml.index(b"</row>", end) + len(b"</row>")
    return end
