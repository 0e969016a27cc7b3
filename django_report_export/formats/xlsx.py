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

import datetime
import decimal
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

from django_report_export.formats.base import ChunkRows, FormatWriter, Row
from django_report_export.formats.values import (
    NoneType,
    check_width,
    decimal_text,
    decimal_texts,
    text_value,
)
from django_report_export.formats.xml import NULL, SEPARATOR, escape_text, escaped_join

#: Rows of a sheet, its header row included (Excel's limit); a module constant so that tests
#: can see the continuation on a second sheet without a million rows.
SHEET_ROWS = 1_048_576
#: Column widths, in characters, that the first chunk's texts are clamped to.
MIN_WIDTH, MAX_WIDTH = 6, 60
#: zlib's fastest level: the sheet XML is repetitive, and level 1 already shrinks it ~10x.
COMPRESSION_LEVEL = 1
#: Rows turned into XML at a time: what a chunk needs beside its rows stays small.
ROWS_A_PIECE = 500

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

#: Cell styles (``s=``), the indices into ``cellXfs`` of ``_STYLES``.
_BOLD, _DATE, _DATETIME, _TIME = 1, 2, 3, 4
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

#: Excel's day zero (serial 0): the 1900 date system, leap-year bug included, is right from
#: 1900-03-01 on; earlier dates are written as text.
_EPOCH = datetime.datetime(1899, 12, 30)
_EPOCH_UTC = _EPOCH.replace(tzinfo=datetime.UTC)
_FIRST_DATE = datetime.date(1900, 3, 1)
_FIRST_SERIAL = (_FIRST_DATE - _EPOCH.date()).days
_ONE_DAY = datetime.timedelta(days=1)
_SECONDS_A_DAY = 86_400

# --- zip records ---------------------------------------------------------------------------

#: 1980-01-01 00:00, the earliest time a zip header can hold (DOS date and time fields).
_DOS_TIME, _DOS_DATE = 0, (0 << 9) | (1 << 5) | 1
_DEFLATED = 8
_DATA_DESCRIPTOR = 0x08  # general-purpose flag: CRC-32 and sizes follow the data
_ZIP32_LIMIT = 0xFFFFFFFF


@dataclass
class _Entry:
    """A zip entry that has been written: where, and what the central directory says of it."""

    name: str
    offset: int
    crc: int
    compressed: int
    size: int
    flags: int = 0


@dataclass
class _State:
    """What the writer has written so far: all a later chunk and the end of the file need."""

    #: Bytes of the file so far.
    written: int = 0
    #: The finished entries (sheets that reached ``SHEET_ROWS``).
    entries: list[_Entry] = field(default_factory=list)
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
        entries = [_Entry(**entry) for entry in data.get("entries", [])]
        return cls(**{**data, "entries": entries})


def _local_header(name: str, flags: int, crc: int = 0, compressed: int = 0, size: int = 0) -> bytes:
    encoded = name.encode()
    return (
        struct.pack(
            "<4s5H3L2H",
            b"PK\x03\x04",
            20,
            flags,
            _DEFLATED,
            _DOS_TIME,
            _DOS_DATE,
            crc,
            compressed,
            size,
            len(encoded),
            0,
        )
        + encoded
    )


def _data_descriptor(crc: int, compressed: int, size: int) -> bytes:
    if compressed > _ZIP32_LIMIT or size > _ZIP32_LIMIT:
        return struct.pack("<4sL2Q", b"PK\x07\x08", crc, compressed, size)
    return struct.pack("<4s3L", b"PK\x07\x08", crc, compressed, size)


def _central_record(entry: _Entry) -> bytes:
    encoded = entry.name.encode()
    big = [value for value in (entry.size, entry.compressed, entry.offset) if value >= _ZIP32_LIMIT]
    extra = struct.pack(f"<2H{len(big)}Q", 1, 8 * len(big), *big) if big else b""
    version = 45 if big else 20

    def clamp(value: int) -> int:
        return _ZIP32_LIMIT if value >= _ZIP32_LIMIT else value

    return (
        struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            version,
            version,
            entry.flags,
            _DEFLATED,
            _DOS_TIME,
            _DOS_DATE,
            entry.crc,
            clamp(entry.compressed),
            clamp(entry.size),
            len(encoded),
            len(extra),
            0,
            0,
            0,
            0,
            clamp(entry.offset),
        )
        + encoded
        + extra
    )


def _end_records(count: int, directory_size: int, directory_offset: int) -> bytes:
    """The end of the central directory, with the zip64 records before it when needed."""
    end = directory_offset + directory_size
    records = b""
    if count >= 0xFFFF or directory_offset >= _ZIP32_LIMIT or directory_size >= _ZIP32_LIMIT:
        records = struct.pack(
            "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, directory_size,
            directory_offset,
        )  # fmt: skip
        records += struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
        count, directory_size, directory_offset = (
            min(count, 0xFFFF),
            min(directory_size, _ZIP32_LIMIT),
            min(directory_offset, _ZIP32_LIMIT),
        )
    return records + struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, directory_size, directory_offset, 0
    )


def _compressor() -> Any:
    """A fresh raw-deflate compressor: the piece it writes, ended by a sync flush
    (byte-aligned, no reference back), may follow any other piece of a deflate stream."""
    return zlib.compressobj(COMPRESSION_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)


def _deflate(data: bytes) -> bytes:
    """``data`` as a whole deflate stream."""
    compressor = _compressor()
    deflated: bytes = compressor.compress(data) + compressor.flush(zlib.Z_FINISH)
    return deflated


# --- cells ---------------------------------------------------------------------------------

#: Text that Excel would read as an escaped character (``_x0041_`` is ``A``): its ``_`` is
#: itself escaped, as the standard says, so that the text reads back as written.
_ESCAPE_LIKE = re.compile("_(?=x[0-9A-Fa-f]{4}_)")


#: A text cell around the escaped text. Spaces at either end of a text are kept
#: (``xml:space``); always saying so is cheaper than looking.
_TEXT_OPEN = '<c t="inlineStr"><is><t xml:space="preserve">'
_TEXT_CLOSE = "</t></is></c>"


def _text_cell(text: str) -> str:
    escaped = escape_text(text)
    if "_x" in escaped:
        escaped = _ESCAPE_LIKE.sub("_x005F_", escaped)
    return f"{_TEXT_OPEN}{escaped}{_TEXT_CLOSE}"


def _text_cells(texts: Sequence[str | None]) -> list[str]:
    """``_text_cell`` of each text (``None``: an empty cell), escaped as one string."""
    joined = escaped_join(texts)
    if "_x" in joined:
        joined = _ESCAPE_LIKE.sub("_x005F_", joined)
    between = f"{_TEXT_CLOSE}{SEPARATOR}{_TEXT_OPEN}"
    cells = f"{_TEXT_OPEN}{joined.replace(SEPARATOR, between)}{_TEXT_CLOSE}"
    return cells.replace(f"{_TEXT_OPEN}{NULL}{_TEXT_CLOSE}", "<c/>").split(SEPARATOR)


def _header_cell(text: str) -> str:
    return _text_cell(text).replace("<c ", f'<c s="{_BOLD}" ', 1)


def _number_cell(value: Any) -> str:
    return f"<c><v>{value}</v></c>"


def _float_cell(value: float) -> str:
    if math.isfinite(value):
        return f"<c><v>{value!r}</v></c>"
    return _text_cell(repr(value))  # Excel has no NaN or infinity.


def _decimal_cell(value: decimal.Decimal) -> str:
    if value.is_finite():
        return f"<c><v>{decimal_text(value)}</v></c>"
    return _text_cell(str(value))


def _bool_cell(value: bool) -> str:
    return '<c t="b"><v>1</v></c>' if value else '<c t="b"><v>0</v></c>'


def _datetime_cell(value: datetime.datetime) -> str:
    days = (value - (_EPOCH if value.tzinfo is None else _EPOCH_UTC)) / _ONE_DAY
    if days < _FIRST_SERIAL:
        return _text_cell(value.isoformat())
    return f'<c s="{_DATETIME}"><v>{days!r}</v></c>'


def _date_cell(value: datetime.date) -> str:
    if value < _FIRST_DATE:
        return _text_cell(value.isoformat())
    return f'<c s="{_DATE}"><v>{(value - _EPOCH.date()).days}</v></c>'


def _time_cell(value: datetime.time) -> str:
    seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    return f'<c s="{_TIME}"><v>{seconds / _SECONDS_A_DAY!r}</v></c>'


def _empty_cell(value: None) -> str:
    return "<c/>"


def _other_cell(value: Any) -> str:
    return _text_cell(text_value(value))


_TEXT_TYPES = frozenset({str, NoneType})
_INT = {int}
_DECIMAL = {decimal.Decimal}
_CELLS: dict[type, Callable[[Any], str]] = {
    NoneType: _empty_cell,
    str: _text_cell,
    int: _number_cell,
    bool: _bool_cell,
    float: _float_cell,
    decimal.Decimal: _decimal_cell,
    datetime.datetime: _datetime_cell,
    datetime.date: _date_cell,
    datetime.time: _time_cell,
}


def _cell_writer(cls: type) -> Callable[[Any], str]:
    """The cell of values of type ``cls``: exact types first, then their bases (an
    ``IntEnum`` member is a number, a ``str`` subclass text); anything else is text."""
    for base in cls.__mro__:
        writer = _CELLS.get(base)
        if writer is not None and base is not object:
            return writer
    return _other_cell


_number = "<c><v>{}</v></c>".format


def _cells(values: Sequence[Any]) -> list[str]:
    """The cells of one column: whole columns of one common type at once, others value by
    value."""
    types = set(map(type, values))
    if types <= _TEXT_TYPES:
        return _text_cells(values)
    if types == _INT:
        return list(map(_number, values))
    if types == _DECIMAL and all(map(decimal.Decimal.is_finite, values)):
        return list(map(_number, decimal_texts(values, types)))
    if len(types) == 1:
        return list(map(_cell_writer(types.pop()), values))
    writers = {cls: _cell_writer(cls) for cls in types}
    return [writers[type(value)](value) for value in values]


def _width(values: Sequence[Any], name: str) -> float:
    texts = [value if type(value) is str else text_value(value) for value in values if value]
    longest = max(len(name), *map(len, texts)) if texts else len(name)
    return float(min(max(longest + 2, MIN_WIDTH), MAX_WIDTH))


def _rows_xml(columns: Sequence[Sequence[Any]], start: int, stop: int) -> Iterator[str]:
    """The ``<row>`` elements of rows ``start`` to ``stop``, ``ROWS_A_PIECE`` at a time."""
    for begin in range(start, stop, ROWS_A_PIECE):
        end = min(begin + ROWS_A_PIECE, stop)
        if not columns:
            yield "<row/>" * (end - begin)
            continue
        cells = zip(*(_cells(column[begin:end]) for column in columns), strict=True)
        yield "".join(map("<row>{}</row>".format, map("".join, cells)))


# --- the writer ----------------------------------------------------------------------------


class XLSXWriter(FormatWriter):
    name = "xlsx"
    extension = "xlsx"
    content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    shardable = False

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
                _width(column, name) for column, name in zip(columns, self.columns, strict=True)
            ]
        pieces: list[bytes] = []
        start, count = 0, len(chunk)
        while start < count:
            if self._state.sheet_rows == SHEET_ROWS:
                pieces += [self._close_sheet(), self._open_sheet()]
            if not self._state.sheet_rows:
                pieces.append(self._sheet_data_start())
            stop = min(count, start + SHEET_ROWS - self._state.sheet_rows)
            pieces.append(self._sheet_xml(_rows_xml(columns, start, stop)))
            self._state.sheet_rows += stop - start
            start = stop
        self._data_rows += len(chunk)
        self._remember()
        return b"".join(pieces)

    def footer(self, *, empty: bool) -> bytes:
        state = self._state
        if state.widths is None:
            state.widths = [_width([], name) for name in self.columns]
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
        header = _local_header(self._sheet_name(len(state.entries) + 1), _DATA_DESCRIPTOR)
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
        header = "".join(map(_header_cell, self.columns))
        self._state.sheet_rows = 1
        return self._sheet_xml(
            f"{f'<cols>{cols}</cols>' if cols else ''}<sheetData><row>{header}</row>"
        )

    def _sheet_xml(self, xml: str | Iterable[str], *, last: bool = False) -> bytes:
        """The next piece of the sheet's deflate stream: ``xml`` (texts one after another),
        ended by a sync flush, or by the stream's end when ``last``."""
        state = self._state
        compressor = _compressor()
        compressed = []
        for text in [xml] if isinstance(xml, str) else xml:
            data = text.encode()
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
        descriptor = _data_descriptor(state.crc, state.compressed, state.size)
        state.entries.append(
            _Entry(
                self._sheet_name(len(state.entries) + 1),
                state.offset,
                state.crc,
                state.compressed,
                state.size,
                _DATA_DESCRIPTOR,
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
            compressed = _deflate(data)
            entry = _Entry(name, state.written, zlib.crc32(data), len(compressed), len(data))
            local = _local_header(name, 0, entry.crc, entry.compressed, entry.size)
            pieces += [local, compressed]
            state.written += len(local) + len(compressed)
            state.entries.append(entry)
        directory = b"".join(map(_central_record, state.entries))
        pieces += [directory, _end_records(len(state.entries), len(directory), state.written)]
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
