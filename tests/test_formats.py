"""The format writers and their registry: pure unit tests, no database.

Every format is parsed back (csv module, json, lxml and the standard library's expat) and
compared with the input row by row; the bytes must not depend on how rows were chunked.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import re
import sys
import uuid
import xml.etree.ElementTree as ElementTree
import zoneinfo
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.utils.dateparse import parse_duration
from lxml import etree

from django_report_export.formats import (
    CSVWriter,
    FormatWriter,
    JSONLinesWriter,
    JSONWriter,
    XLSXWriter,
    XMLWriter,
    format_names,
    get_writer_class,
    register_format,
    unregister_format,
)
from django_report_export.formats.base import ChunkRows
from django_report_export.formats.csv import LEADING_WHITESPACE
from django_report_export.formats.values import decimal_texts
from django_report_export.formats.xml import xml_name

from .support.formula_guard import guarded

UTC = dt.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))

COLUMNS = [
    "id",
    "name",
    "customer__email",
    "total",
    "created",
    "ship_date",
    "ship_time",
    "duration",
    "ref",
    "paid",
    "score",
    "data",
    "note",
    "count",
]

#: Every character XML 1.0 forbids, including lone surrogates.
FORBIDDEN = (
    "".join(chr(c) for c in range(0x20) if c not in (0x09, 0x0A, 0x0D))
    + "\ufffe\uffff\ud800\udbff\udc00\udfff"
)
FORBIDDEN_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
SURROGATE_RE = re.compile("[\ud800-\udfff]")
UNICODE = "Zoë 日本 🎉 \U0001d518 \u0301 \u2028 \x7f \x85 €"
LONG_TEXT = ("0123456789abcdé" * 70_000)[:1_000_000]


def make_row(index: int, **values: Any) -> tuple[Any, ...]:
    row = {
        "id": index,
        "name": f"Name {index}",
        "customer__email": f"user{index}@example.com",
        "total": Decimal("1234567.89"),
        "created": dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC),
        "ship_date": dt.date(2024, 5, 3),
        "ship_time": dt.time(14, 30),
        "duration": dt.timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=5),
        "ref": uuid.UUID(int=index),
        "paid": index % 2 == 0,
        "score": 4.25,
        "data": {"tags": ["a", "b"], "n": 1, "nested": {"x": None}},
        "note": "plain",
        "count": -index,
    }
    row.update(values)
    return tuple(row[column] for column in COLUMNS)


ROWS = [
    make_row(1),
    make_row(2, **dict.fromkeys(COLUMNS[1:])),
    make_row(3, name="", customer__email="", note="", data={}),
    make_row(4, name='He said "hi", then left', note="line one\nline two\r\nline three\rend"),
    make_row(5, name=UNICODE, note="tab\there, comma, semicolon; <tag> & ]]> 'quote'"),
    make_row(6, note=LONG_TEXT),
    make_row(7, name=FORBIDDEN, note="a" + FORBIDDEN + "b", customer__email="\x00"),
    make_row(8, name="=SUM(A1:A9)", note="+1", customer__email="-2", data=["=x", 1, 2.5]),
    make_row(9, name="@cmd", note="\tindent", customer__email="\rcr"),
    make_row(
        10,
        total=Decimal("0E-8"),
        created=dt.datetime(1850, 1, 1, 12, 0, tzinfo=BERLIN),  # +00:53:28, local mean time
        score=float("nan"),
        count=2**70,
        duration=dt.timedelta(seconds=-5),
    ),
    make_row(11, total=Decimal("1E+3"), created=dt.datetime(2024, 1, 1, tzinfo=IST)),
    make_row(12, total=Decimal("-0.000000001"), created=dt.datetime(2024, 7, 1, 2, 30)),
    make_row(13, total=Decimal("12345678901234567890.123456789012345678"), score=-0.0),
    make_row(14, note='},{"id":14,"x":1}', data=[{"id": 1}, {"id": 2}], name="},{"),
    make_row(15, paid=False, score=float("inf"), note="\x01 mark", data=[]),
]


def expected_text(value: Any) -> str | None:
    """What a CSV cell or XML element holds, written independently of the implementation."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.timedelta):
        return None  # Checked through parse_duration.
    if isinstance(value, dict | list):
        return None  # Checked through json.loads.
    if isinstance(value, str):
        return SURROGATE_RE.sub("\ufffd", value)
    return str(value)


def check_text(cell: str, value: Any) -> None:
    if isinstance(value, dt.timedelta):
        assert parse_duration(cell) == value
    elif isinstance(value, dict | list):
        assert json.loads(cell) == value
        assert ", " not in cell  # compact
        assert ": " not in cell
    else:
        assert cell == expected_text(value)


def export(
    writer: FormatWriter, rows: Sequence[Sequence[Any]], sizes: Sequence[int] | None = None
) -> bytes:
    """The bytes of an export of ``rows`` in chunks of ``sizes`` (one chunk by default)."""
    parts = [writer.header()]
    sizes = list(sizes) if sizes is not None else [len(rows)]
    position = 0
    for size in sizes:
        chunk = rows[position : position + size]
        parts.append(writer.encode_rows(chunk, first=position == 0))
        position += size
    assert position == len(rows)
    parts.append(writer.footer(empty=not rows))
    return b"".join(parts)


def random_sizes(total: int, seed: int) -> list[int]:
    rnd = random.Random(seed)
    sizes = []
    while sum(sizes) < total:
        sizes.append(min(rnd.choice([1, 1, 2, 3, 5, 8]), total - sum(sizes)))
    return sizes


def read_csv(data: bytes) -> list[list[str]]:
    limit = csv.field_size_limit()
    csv.field_size_limit(10_000_000)
    try:
        return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    finally:
        csv.field_size_limit(limit)


# --- CSV -----------------------------------------------------------------------------------


def test_csv_round_trip() -> None:
    data = export(CSVWriter("order", COLUMNS), ROWS)
    assert not data.startswith(b"\xef\xbb\xbf")  # no BOM
    assert data.startswith(b"id,name,customer__email,total,created,")
    assert data.endswith(b"\n")
    assert not data.endswith(b"\r\n")
    table = read_csv(data)
    assert table[0] == COLUMNS
    assert len(table) == len(ROWS) + 1
    for row, cells in zip(ROWS, table[1:], strict=True):
        for value, cell in zip(row, cells, strict=True):
            if value is None:
                assert cell == ""
            elif isinstance(value, str):
                assert cell == guarded(expected_text(value))
            else:
                check_text(cell, value)


def test_csv_values() -> None:
    table = read_csv(export(CSVWriter("order", COLUMNS), ROWS))
    by_id = {int(cells[0]): dict(zip(COLUMNS, cells, strict=True)) for cells in table[1:]}
    assert by_id[1]["total"] == "1234567.89"
    assert by_id[1]["created"] == "2024-05-01T10:00:00.123456+00:00"
    assert by_id[1]["paid"] == "false"
    assert by_id[1]["duration"] == "P1DT02H03M04.000005S"
    assert by_id[1]["ref"] == "00000000-0000-0000-0000-000000000001"
    assert by_id[1]["data"] == '{"tags":["a","b"],"n":1,"nested":{"x":null}}'
    assert by_id[10]["total"] == "0.00000000"
    assert by_id[10]["created"] == "1850-01-01T12:00:00+00:53:28"
    assert by_id[10]["count"] == str(2**70)
    assert by_id[10]["score"] == "nan"
    assert by_id[10]["duration"] == "-P0DT00H00M05S"
    assert by_id[11]["total"] == "1000"
    assert by_id[11]["created"] == "2024-01-01T00:00:00+05:30"
    assert by_id[12]["created"] == "2024-07-01T02:30:00"
    assert by_id[13]["total"] == "12345678901234567890.123456789012345678"
    assert by_id[4]["note"] == "line one\nline two\r\nline three\rend"
    assert by_id[5]["name"] == UNICODE
    assert by_id[6]["note"] == LONG_TEXT
    # Nulls and empty strings are both empty cells.
    assert by_id[2]["name"] == by_id[3]["name"] == ""


def test_csv_quoting_is_rfc4180() -> None:
    writer = CSVWriter("order", ["a", "b"])
    data = writer.encode_rows([('say "hi"', "x,y"), ("multi\r\nline", "plain")], first=True)
    assert data == b'"say ""hi""","x,y"\n"multi\r\nline",plain\n'


def test_csv_records_end_with_lf_and_every_cr_or_lf_is_quoted() -> None:
    """As PostgreSQL's COPY writes CSV: a lone CR is quoted too (Python < 3.12's csv module
    quotes only the line terminator's characters)."""
    with override_settings(REPORT_EXPORT={"CSV_FORMULA_GUARD": False}):
        writer = CSVWriter("order", ["a", "b"])
    rows = [("x\ry", "cr"), ("x\ny", "lf"), ("x\r\ny", "crlf"), ("", None), ("plain", 1)]
    data = writer.encode_rows(rows, first=True)
    assert data == b'"x\ry",cr\n"x\ny",lf\n"x\r\ny",crlf\n,\nplain,1\n'
    assert read_csv(data) == [
        ["x\ry", "cr"],
        ["x\ny", "lf"],
        ["x\r\ny", "crlf"],
        ["", ""],
        ["plain", "1"],
    ]


def reference_csv(rows: Sequence[Sequence[Any]]) -> bytes:
    """RFC 4180 records as Python's csv module writes them with CRLF (which quotes every cell
    holding CR or LF on every Python version), each record's end then made LF."""
    records = []
    for row in rows:
        buffer = io.StringIO()
        # The module quotes cells holding a character of the line terminator: the writer also
        # quotes those holding a semicolon, a tab or a bar.
        csv.writer(buffer, lineterminator="\r\n;\t|").writerow(row)
        records.append(buffer.getvalue()[:-5] + "\n")
    return (
        "".join(records)
        .encode("utf-8", "surrogatepass")
        .replace("\udfff".encode("utf-8", "surrogatepass"), "\ufffd".encode())
    )


@pytest.mark.parametrize("width", [0, 1, 2, 3, 5])
def test_csv_quoting_matches_the_csv_module(width: int) -> None:
    rnd = random.Random(width)
    palette = [*"ab ,\"'\n\r\t;=+-@", "\x00", "\x01", "日", "🎉", "\udfff", ""]
    rows = [
        tuple(
            None if rnd.random() < 0.1 else "".join(rnd.choices(palette, k=rnd.randint(0, 4)))
            for _ in range(width)
        )
        for _ in range(2000)
    ]
    with override_settings(REPORT_EXPORT={"CSV_FORMULA_GUARD": False}):
        writer = CSVWriter("order", [f"c{index}" for index in range(width)])
    assert writer.encode_rows(rows, first=True) == reference_csv(rows)
    assert writer.header() == reference_csv([writer.columns])


def test_csv_one_column_empty_cells_are_quoted_not_empty_lines() -> None:
    writer = CSVWriter("order", ["note"])
    assert writer.encode_rows([("",), (None,), ("x",), ("a,b",)], first=True) == (
        b'""\n""\nx\n"a,b"\n'
    )
    assert CSVWriter("order", []).encode_rows([(), ()], first=True) == b"\n\n"
    assert CSVWriter("order", [""]).header() == b'""\n'


def test_csv_formula_guard_on_by_default() -> None:
    writer = CSVWriter("order", ["text", "int", "decimal", "float", "mixed", "json"])
    rows = [
        ("=1+1", -5, Decimal("-1.50"), -2.5, "-x", {"a": "=b"}),
        ("+x", 3, Decimal("2"), 0.5, 7, ["=c"]),
        ("-x", None, None, None, None, None),
        ("@x", 0, Decimal("0"), 0.0, "@y", None),
        ("\tx", 1, Decimal("1"), 1.0, None, None),
        ("\rx", 1, Decimal("1"), 1.0, "a=b", None),
        ("a=b", 1, Decimal("1"), 1.0, "", None),
        ("", 1, Decimal("1"), 1.0, "'quoted", None),
    ]
    table = read_csv(writer.encode_rows(rows, first=True))
    assert [cells[0] for cells in table] == [
        "'=1+1",
        "'+x",
        "'-x",
        "'@x",
        "'\tx",
        "'\rx",
        "a=b",
        "",
    ]
    assert [cells[1] for cells in table] == ["-5", "3", "", "0", "1", "1", "1", "1"]
    assert table[0][2:4] == ["-1.50", "-2.5"]
    assert [cells[4] for cells in table] == ["'-x", "7", "", "'@y", "", "a=b", "", "'quoted"]
    assert table[0][5] == '{"a":"=b"}'  # JSON text starts with "{" or "[", never guarded


@pytest.mark.parametrize(
    ("text", "written"),
    [
        # after leading whitespace of any kind
        (" =1+1", "' =1+1"),
        ("\xa0\u3000\n@cmd", "\"'\xa0\u3000\n'@cmd\""),
        ("\x0b\x0c\x85\u2028+1", "'\x0b\x0c\x85\u2028+1"),
        # the full-width signs
        ("\uff1d1+1", "'\uff1d1+1"),
        ("\uff0bA1", "'\uff0bA1"),
        ("\uff0d1", "'\uff0d1"),
        ("\uff20SUM(A1)", "'\uff20SUM(A1)"),
        # where a spreadsheet splitting at ; , tab or a line end starts a cell or a record
        ("x;=1+1", '"x;\'=1+1"'),
        ("x; =1+1", '"x;\' =1+1"'),
        ("Tel. 030; +49 171", '"Tel. 030;\' +49 171"'),
        ("a,=1", '"a,\'=1"'),
        ("a, -b", '"a,\' -b"'),
        ("x\t\t=1", "\"x\t'\t'=1\""),
        ("ok\n=1+1", '"ok\n\'=1+1"'),
        ("ok\r\n-1", "\"ok\r'\n'-1\""),
        ("a|=1", '"a|\'=1"'),
        # and after a quote, which opens a quoted cell where a spreadsheet starts one
        ('x;"=1"', '"x;\'""=1"""'),
        ('"=1"', '"\'""=1"""'),
        (";;=1", '";;\'=1"'),
        ("=1;=2", "\"'=1;'=2\""),
        # a tab or CR first is guarded whatever follows (OWASP), and so is the sign after it
        ("\tx", '"\'\tx"'),
        ("\rx", '"\'\rx"'),
        ("\t=1", "\"'\t'=1\""),
        # harmless: no formula character where a cell may start
        ("a - b", "a - b"),
        ("e-mail a@example.com", "e-mail a@example.com"),
        ("a=b;c+d", '"a=b;c+d"'),
        ("x; y", '"x; y"'),
        ("x;\ty", '"x;\ty"'),
        ("one\r\n\r\n\tindented", '"one\r\n\r\n\tindented"'),
        (" ", " "),
        ("'=1", "'=1"),
    ],
)
def test_csv_formula_guard_marks_every_place_a_spreadsheet_may_start_a_cell(
    text: str, written: str
) -> None:
    data = CSVWriter("order", ["text", "n"]).encode_rows([(text, 1)], first=True)
    assert data == f"{written},1\n".encode()
    assert read_csv(data) == [[guarded(text), "1"]]


def test_csv_formula_guard_of_random_texts() -> None:
    """The scan of a whole column finds every text that needs a mark: random texts of cell
    breaks, whitespace, quotes and signs, written 100 to a chunk, read back against the rule
    spelled out."""
    rng = random.Random(5)
    alphabet = [*",;\t|\r\n", " ", "\xa0", "\u3000", '"', *"=+-@", "\uff1d", "x", "1"]
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 8))) for _ in range(5000)]
    writer = CSVWriter("order", ["text", "n"])
    data = b"".join(
        writer.encode_rows([(text, 1) for text in texts[start : start + 100]], first=True)
        for start in range(0, len(texts), 100)
    )
    assert read_csv(data) == [[guarded(text), "1"] for text in texts]


def test_csv_formula_guard_of_random_one_line_texts() -> None:
    """A column whose texts hold no line end, tab or CR (phone numbers, names) is guarded in
    one pass over the whole column: random such texts, many starting with a sign, read back
    against the rule spelled out."""
    rng = random.Random(7)
    alphabet = [*",;|", " ", "\xa0", "\x0b", "\x85", "\u2028", '"', "'", *"=+-@", "\uff0b", "x"]
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(5000)]
    texts += [f"+49 30 {number}" for number in range(100)]  # a sign first in every text
    writer = CSVWriter("order", ["text", "n"])
    data = b"".join(
        writer.encode_rows([(text, 1) for text in texts[start : start + 100]], first=True)
        for start in range(0, len(texts), 100)
    )
    assert read_csv(data) == [[guarded(text), "1"] for text in texts]


def test_leading_whitespace_is_what_python_calls_whitespace() -> None:
    everything = map(chr, range(sys.maxunicode + 1))
    assert set(LEADING_WHITESPACE) == {char for char in everything if char.isspace()}


def test_csv_cells_holding_a_semicolon_a_tab_or_a_bar_are_quoted() -> None:
    with override_settings(REPORT_EXPORT={"CSV_FORMULA_GUARD": False}):
        writer = CSVWriter("order", ["a", "b"])
    data = writer.encode_rows([("x;y", "x\ty"), ("plain", "a|b")], first=True)
    assert data == b'"x;y","x\ty"\nplain,"a|b"\n'


def test_csv_formula_guard_off() -> None:
    with override_settings(REPORT_EXPORT={"CSV_FORMULA_GUARD": False}):
        writer = CSVWriter("order", ["text", "mixed"])
    rows = [("=1+1", "-x"), ("+x", 5), ("@x", "\tx")]
    table = read_csv(writer.encode_rows(rows, first=True))
    assert table == [["=1+1", "-x"], ["+x", "5"], ["@x", "\tx"]]


def test_csv_setting_is_read_when_the_writer_is_made() -> None:
    writer = CSVWriter("order", ["text"])
    with override_settings(REPORT_EXPORT={"CSV_FORMULA_GUARD": False}):
        assert writer.encode_rows([("=x",)], first=True) == b"'=x\n"
        assert CSVWriter("order", ["text"]).encode_rows([("=x",)], first=True) == b"=x\n"


def test_csv_forbidden_characters_survive_and_surrogates_become_fffd() -> None:
    writer = CSVWriter("order", ["text"])
    table = read_csv(writer.encode_rows([("a\x00\x01\x0b\ud800\udfffz",)], first=True))
    assert table == [["a\x00\x01\x0b\ufffd\ufffdz"]]


def test_csv_empty_export_is_the_header() -> None:
    assert export(CSVWriter("order", ["id", "customer__email"]), []) == (b"id,customer__email\n")


# --- JSON ----------------------------------------------------------------------------------


def expected_json(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), -float("inf"))):
        return None
    if isinstance(value, bool | int | float | dict | list) or value is None:
        return value
    if isinstance(value, dt.timedelta):
        return "P1DT02H03M04.000005S" if value.days == 1 else "-P0DT00H00M05S"
    return expected_text(value)


def test_json_round_trip() -> None:
    data = export(JSONWriter("order", COLUMNS), ROWS)
    records = json.loads(data)
    assert isinstance(records, list)
    assert len(records) == len(ROWS)
    for row, record in zip(ROWS, records, strict=True):
        assert list(record) == COLUMNS
        for column, value in zip(COLUMNS, row, strict=True):
            assert record[column] == expected_json(value), column


def test_json_values() -> None:
    records = {r["id"]: r for r in json.loads(export(JSONWriter("order", COLUMNS), ROWS))}
    assert records[1]["total"] == "1234567.89"
    assert records[1]["created"] == "2024-05-01T10:00:00.123456+00:00"
    assert records[1]["ship_date"] == "2024-05-03"
    assert records[1]["ship_time"] == "14:30:00"
    assert records[1]["paid"] is False
    assert records[4]["paid"] is True
    assert records[1]["data"] == {"tags": ["a", "b"], "n": 1, "nested": {"x": None}}
    assert all(value is None for key, value in records[2].items() if key != "id")
    assert records[3]["name"] == ""
    assert records[10]["total"] == "0.00000000"
    assert records[10]["created"] == "1850-01-01T12:00:00+00:53:28"
    assert records[10]["count"] == 2**70
    assert records[11]["total"] == "1000"
    assert records[12]["created"] == "2024-07-01T02:30:00"
    assert records[13]["total"] == "12345678901234567890.123456789012345678"
    assert records[7]["name"] == SURROGATE_RE.sub("\ufffd", FORBIDDEN)
    assert records[6]["note"] == LONG_TEXT


def test_json_layout_one_object_per_line() -> None:
    writer = JSONWriter("order", ["id", "name"])
    data = export(writer, [(1, "a"), (2, '},{"id":3}'), (3, None)])
    assert data == (
        b'[\n{"id":1,"name":"a"},\n{"id":2,"name":"},{\\"id\\":3}"},\n{"id":3,"name":null}\n]\n'
    )


def test_json_nested_objects_keep_the_layout() -> None:
    writer = JSONWriter("order", ["id", "data"])
    rows = [(1, [{"id": 1}, {"id": 2}]), (2, [{"b": 1}, {"c": 2}])]
    data = export(writer, rows)
    assert data.split(b"\n") == [
        b"[",
        b'{"id":1,"data":[{"id":1},{"id":2}]},',
        b'{"id":2,"data":[{"b":1},{"c":2}]}',
        b"]",
        b"",
    ]


def test_json_empty_export() -> None:
    data = export(JSONWriter("order", COLUMNS), [])
    assert data == b"[\n]\n"
    assert json.loads(data) == []


# --- XML -----------------------------------------------------------------------------------


def parse_xml(data: bytes) -> etree._Element:
    root = etree.fromstring(data)  # lxml (libxml2): raises on anything not well-formed
    ElementTree.fromstring(data)  # expat, too
    return root


def test_xml_round_trip() -> None:
    data = export(XMLWriter("order", COLUMNS), ROWS)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<orderList>\n')
    root = parse_xml(data)
    assert root.tag == "orderList"
    assert len(root) == len(ROWS)
    for row, record in zip(ROWS, root, strict=True):
        assert record.tag == "order"
        children = {child.tag: child.text or "" for child in record}
        assert [child.tag for child in record] == [
            column for column, value in zip(COLUMNS, row, strict=True) if value is not None
        ]
        for column, value in zip(COLUMNS, row, strict=True):
            if value is None:
                assert column not in children  # absent = null
            elif isinstance(value, str):
                assert children[column] == FORBIDDEN_RE.sub("\ufffd", value)
            else:
                check_text(children[column], value)


def test_xml_values() -> None:
    root = parse_xml(export(XMLWriter("order", COLUMNS), ROWS))
    records = {int(r.findtext("id")): r for r in root}
    assert records[1].findtext("total") == "1234567.89"
    assert records[1].findtext("created") == "2024-05-01T10:00:00.123456+00:00"
    assert records[1].findtext("paid") == "false"
    assert records[1].findtext("customer__email") == "user1@example.com"
    assert records[3].find("name") is not None
    assert records[3].findtext("name") == ""
    assert records[2].find("name") is None
    assert records[4].findtext("note") == "line one\nline two\r\nline three\rend"
    assert records[5].findtext("name") == UNICODE
    assert records[5].findtext("note") == "tab\there, comma, semicolon; <tag> & ]]> 'quote'"
    assert records[6].findtext("note") == LONG_TEXT
    assert records[7].findtext("name") == "\ufffd" * len(FORBIDDEN)
    assert records[7].findtext("customer__email") == "\ufffd"
    assert records[10].findtext("total") == "0.00000000"
    assert records[10].findtext("created") == "1850-01-01T12:00:00+00:53:28"
    assert records[10].findtext("count") == str(2**70)
    assert records[15].findtext("note") == "\ufffd mark"


def test_xml_every_forbidden_character_alone() -> None:
    writer = XMLWriter("inquiry", ["text"])
    rows = [(char,) for char in FORBIDDEN] + [(f"x{char}y",) for char in FORBIDDEN]
    root = parse_xml(export(writer, rows))
    assert [record.findtext("text") for record in root] == ["\ufffd"] * len(FORBIDDEN) + [
        "x\ufffdy"
    ] * len(FORBIDDEN)


def test_xml_allowed_characters_are_kept() -> None:
    writer = XMLWriter("inquiry", ["text"])
    text = "\t\n\r\x7f\x85\ud7ff\ue000\ufffd\U00010000\U0010ffff"
    root = parse_xml(export(writer, [(text,)]))
    assert root[0].findtext("text") == text


def test_xml_empty_export() -> None:
    data = export(XMLWriter("order", COLUMNS), [])
    assert data == b'<?xml version="1.0" encoding="UTF-8"?>\n<orderList>\n</orderList>\n'
    root = parse_xml(data)
    assert root.tag == "orderList"
    assert len(root) == 0


def test_xml_names() -> None:
    assert xml_name("customer__email") == "customer__email"
    assert xml_name("größe") == "größe"
    assert xml_name("order total") == "order_x0020_total"
    assert xml_name("1st") == "_x0031_st"
    assert xml_name("a:b") == "a_x003A_b"
    assert xml_name("") == "_"
    assert xml_name("<&>") == "_x003C__x0026__x003E_"
    writer = XMLWriter("data feed", ["order total", "1st", "a:b", "", "x%sy", "ok"])
    root = parse_xml(export(writer, [(1, 2, 3, 4, 5, 6)]))
    assert root.tag == "data_x0020_feedList"
    assert [(child.tag, child.text) for child in root[0]] == [
        ("order_x0020_total", "1"),
        ("_x0031_st", "2"),
        ("a_x003A_b", "3"),
        ("_", "4"),
        ("x_x0025_sy", "5"),
        ("ok", "6"),
    ]


# --- All formats ---------------------------------------------------------------------------

WRITERS = [CSVWriter, JSONWriter, XMLWriter]


def mixed_rows() -> list[tuple[Any, ...]]:
    """Rows in which some take a writer's fast path and some its slow one."""
    rows = list(ROWS)
    rnd = random.Random(7)
    for index in range(16, 80):
        row = list(make_row(index))
        for position in rnd.sample(range(1, len(COLUMNS)), 4):
            row[position] = rnd.choice(
                [
                    None,
                    "",
                    "x\x00y",
                    "\ud800",
                    "=1",
                    '},{"id":',
                    "<&>\r\n",
                    2**65,
                    Decimal("1E-9"),
                    dt.datetime(1850, 1, 1, tzinfo=BERLIN),
                    dt.datetime(2024, 3, 31, 2, 30, tzinfo=BERLIN),
                    dt.time(1, 2, tzinfo=UTC),
                    [{"id": 1}, {"id": 2}],
                    True,
                    3.5,
                    b"\x00\xff",
                ]
            )
        rows.append(tuple(row))
    return rows


@pytest.mark.parametrize("writer_class", WRITERS)
def test_bytes_do_not_depend_on_chunking(writer_class: type[FormatWriter]) -> None:
    rows = mixed_rows()
    whole = export(writer_class("order", COLUMNS), rows)
    assert export(writer_class("order", COLUMNS), rows, [1] * len(rows)) == whole
    for seed in range(5):
        sizes = random_sizes(len(rows), seed)
        assert export(writer_class("order", COLUMNS), rows, sizes) == whole, sizes
    # A fresh writer per chunk, as after a pause or on another worker.
    parts = [writer_class("order", COLUMNS).header()]
    for start in range(0, len(rows), 7):
        writer = writer_class("order", COLUMNS)
        parts.append(writer.encode_rows(rows[start : start + 7], first=start == 0))
    parts.append(writer_class("order", COLUMNS).footer(empty=False))
    assert b"".join(parts) == whole


@pytest.mark.parametrize("writer_class", WRITERS)
def test_mixed_rows_parse(writer_class: type[FormatWriter]) -> None:
    data = export(writer_class("order", COLUMNS), mixed_rows())
    data.decode("utf-8")  # valid UTF-8 despite lone surrogates in the input
    if writer_class is CSVWriter:
        assert len(read_csv(data)) == len(mixed_rows()) + 1
    elif writer_class is JSONWriter:
        assert len(json.loads(data)) == len(mixed_rows())
    else:
        assert len(parse_xml(data)) == len(mixed_rows())


@pytest.mark.parametrize("writer_class", WRITERS)
def test_rows_of_the_wrong_width_are_refused(writer_class: type[FormatWriter]) -> None:
    writer = writer_class("order", ["a", "b"])
    with pytest.raises(ValueError, match="2 values"):
        writer.encode_rows([(1, 2), (3,)], first=True)


@pytest.mark.parametrize("writer_class", WRITERS)
def test_no_rows_in_a_chunk_is_no_bytes(writer_class: type[FormatWriter]) -> None:
    assert writer_class("order", ["a"]).encode_rows([], first=False) == b""


@pytest.mark.parametrize(
    ("writer_class", "extension", "content_type"),
    [
        (CSVWriter, "csv", "text/csv; charset=utf-8"),
        (JSONWriter, "json", "application/json"),
        (XMLWriter, "xml", "application/xml"),
    ],
)
def test_writer_attributes(
    writer_class: type[FormatWriter], extension: str, content_type: str
) -> None:
    assert writer_class.name == extension
    assert writer_class.extension == extension
    assert writer_class.content_type == content_type


# --- Registry ------------------------------------------------------------------------------


class TSVWriter(FormatWriter):
    name = "tsv"
    extension = "tsv"
    content_type = "text/tab-separated-values"

    def encode_rows(self, rows: Sequence[Sequence[Any]], *, first: bool) -> bytes:
        return b"".join("\t".join(map(str, row)).encode() + b"\n" for row in rows)


class NotAWriter:
    pass


def test_builtin_formats() -> None:
    assert get_writer_class("csv") is CSVWriter
    assert get_writer_class("json") is JSONWriter
    assert get_writer_class("xml") is XMLWriter
    assert get_writer_class("jsonl") is JSONLinesWriter
    assert get_writer_class("xlsx") is XLSXWriter
    assert format_names() == ["csv", "json", "jsonl", "xlsx", "xml"]


def test_unknown_format() -> None:
    known = "csv, json, jsonl, xlsx, xml"
    with pytest.raises(LookupError, match=rf"Unknown export format 'yaml'.*{known}"):
        get_writer_class("yaml")


def test_format_from_settings_is_read_at_call_time() -> None:
    with pytest.raises(LookupError):
        get_writer_class("tsv")
    with override_settings(REPORT_EXPORT={"FORMATS": {"tsv": f"{__name__}.TSVWriter"}}):
        assert get_writer_class("tsv") is TSVWriter
        assert format_names() == ["csv", "json", "jsonl", "tsv", "xlsx", "xml"]
        writer = get_writer_class("tsv")("order", ["a", "b"])
        assert export(writer, [(1, "x")]) == b"1\tx\n"
    with pytest.raises(LookupError):
        get_writer_class("tsv")


def test_settings_may_replace_a_builtin_format() -> None:
    with override_settings(REPORT_EXPORT={"FORMATS": {"csv": f"{__name__}.TSVWriter"}}):
        assert get_writer_class("csv") is TSVWriter
    assert get_writer_class("csv") is CSVWriter


@pytest.mark.parametrize(
    "path", [f"{__name__}.NotAWriter", f"{__name__}.Missing", "no_such_module.Writer"]
)
def test_bad_format_setting(path: str) -> None:
    with (
        override_settings(REPORT_EXPORT={"FORMATS": {"bad": path}}),
        pytest.raises(ImproperlyConfigured, match="FORMATS"),
    ):
        get_writer_class("bad")


def test_register_format_in_code() -> None:
    try:
        assert register_format(TSVWriter) is TSVWriter
        assert get_writer_class("tsv") is TSVWriter
        assert "tsv" in format_names()
        register_format(TSVWriter, name="tab")
        assert get_writer_class("tab") is TSVWriter
    finally:
        unregister_format("tsv")
        unregister_format("tab")
    assert "tsv" not in format_names()


def test_register_format_refuses_what_is_not_a_writer() -> None:
    with pytest.raises(ImproperlyConfigured):
        register_format(NotAWriter)  # type: ignore[arg-type]
    with pytest.raises(ImproperlyConfigured, match="name"):
        register_format(FormatWriter)


# --- Random rows ---------------------------------------------------------------------------

PALETTE = [*"ab,\"'\n\r\t<>&;=+-@{}[]:", "\x00", "\x01", "\x1f", "\ufffe", "\ud800", "日", "🎉"]
PALETTE += ["null", "E", '},{"c0":']


def random_value(rnd: random.Random, kind: int) -> Any:
    choices: list[Any] = [
        None,
        "".join(rnd.choice(PALETTE) for _ in range(rnd.randrange(6))),
        rnd.choice([0, -1, 2**63 - 1, -(2**63), 2**64, 7]),
        rnd.choice([True, False]),
        Decimal(rnd.choice(["0E-8", "1E+3", "-1.50", "12.34", "NaN", "-0", "1e-9"])),
        dt.datetime(
            rnd.choice([1850, 2024]),
            3,
            31,
            rnd.randrange(24),
            tzinfo=rnd.choice([None, UTC, BERLIN, IST, dt.timezone(dt.timedelta(seconds=30))]),
        ),
        dt.date(2024, 1, rnd.randrange(1, 28)),
        rnd.choice([dt.time(1, 2, 3, 4), dt.time(23, 59, tzinfo=UTC)]),
        uuid.UUID(int=rnd.getrandbits(128)),
        rnd.choice([{"c0": 1, "x": [1, {"c0": "},{"}]}, [{"c0": 1}, {"c0": 2}], [], {}]),
    ]
    return choices[kind]


@pytest.mark.parametrize("seed", range(40))
def test_random_rows(seed: int) -> None:
    """Columns of one type, or of mixed types, with nulls: parsed back and chunk-independent."""
    rnd = random.Random(seed)
    columns = [f"c{i}" for i in range(rnd.randrange(1, 6))]
    kinds = [rnd.randrange(-1, 10) for _ in columns]  # -1: a new kind for every value
    rows = [
        tuple(
            None
            if rnd.random() < 0.2
            else random_value(rnd, kind if kind >= 0 else rnd.randrange(10))
            for kind in kinds
        )
        for _ in range(rnd.randrange(30))
    ]
    for writer_class in WRITERS:
        whole = export(writer_class("svc", columns), rows)
        for sizes_seed in range(3):
            sizes = random_sizes(len(rows), sizes_seed)
            assert export(writer_class("svc", columns), rows, sizes) == whole
    table = read_csv(export(CSVWriter("svc", columns), rows))
    records = json.loads(export(JSONWriter("svc", columns), rows))
    elements = parse_xml(export(XMLWriter("svc", columns), rows))
    assert len(table) - 1 == len(records) == len(elements) == len(rows)
    for row, cells, record, element in zip(rows, table[1:], records, elements, strict=True):
        children = {child.tag: child.text or "" for child in element}
        for column, value, cell in zip(columns, row, cells, strict=True):
            if value is None:
                assert cell == ""
                assert record[column] is None
                assert column not in children
            elif isinstance(value, str):
                assert cell == guarded(expected_text(value))
                assert record[column] == expected_text(value)
                assert children[column] == FORBIDDEN_RE.sub("\ufffd", value)
            elif isinstance(value, dict | list):
                assert json.loads(cell) == record[column] == json.loads(children[column]) == value
            else:
                assert cell == children[column] == expected_text(value)
                assert record[column] == expected_json(value)


# --- Chunks as readers hold them --------------------------------------------------------------


def as_chunk(rows: Sequence[Sequence[Any]], width: int, seed: int) -> ChunkRows:
    """``rows`` as a reader may hold them: each raw row with a key in front, and some columns
    replaced (their raw values scrambled, as before a converter ran)."""
    rnd = random.Random(seed)
    replaced = {index: [row[index] for row in rows] for index in range(width) if rnd.random() < 0.4}
    raw = [
        ("key", *("raw" if index in replaced else value for index, value in enumerate(row)))
        for row in rows
    ]
    return ChunkRows(raw, width, replaced, skip=1)


def test_chunk_rows_shapes() -> None:
    raw = [(10, "a", 1), (11, "b", 2)]
    chunk = ChunkRows(raw, 2, {1: [True, None]}, skip=1)
    assert len(chunk) == 2
    assert chunk.rows() == [("a", True), ("b", None)]
    assert chunk.columns() == [["a", "b"], [True, None]]
    assert list(chunk.values(0)) == ["a", "b"]
    assert chunk.records(["x", "y"]) == [{"x": "a", "y": True}, {"x": "b", "y": None}]
    assert list(chunk.records(["x", "y"])[0]) == ["x", "y"]  # keys in column order
    assert chunk.records(["x", "x"]) == [{"x": True}, {"x": None}]  # the last one, as dict()
    more = chunk.replace({0: ["c", "d"]})
    assert more.rows() == [("c", True), ("d", None)]
    assert chunk.rows() == [("a", True), ("b", None)]  # unchanged
    plain = ChunkRows(raw, 3)
    assert plain.rows() is raw
    assert ChunkRows(raw, 2, skip=1).rows() == [("a", 1), ("b", 2)]
    assert ChunkRows([(1,), (2,)], 0, {}, skip=1).rows() == [(), ()]
    assert ChunkRows([(1,), (2,)], 0, {0: [1, 2]}, skip=1).rows() == [(), ()]


def test_chunk_rows_raw_types_from_the_reader() -> None:
    """A reader that knows the types of its raw values says so; the chunk does not look."""
    raw = [(1, "a"), (2, "b")]
    assert ChunkRows(raw, 2).raw_types() == {int, str}
    chunk = ChunkRows(raw, 2, raw_types={int, str, bytes})
    assert chunk.raw_types() == {int, str, bytes}
    assert chunk.replace({1: ["c", "d"]}).raw_types() == {int, str, bytes}


@pytest.mark.parametrize("writer_class", WRITERS)
@pytest.mark.parametrize("blob", [None, b"\x00\xff", b""])
def test_encode_chunk_with_raw_types_given(writer_class: type[FormatWriter], blob: Any) -> None:
    """Raw values of the types SQLite returns (bytes among them), with converted columns: the
    same bytes as from the rows, whether or not a bytes value is there."""
    columns = ["id", "note", "total", "created"]
    created = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)
    rows = [
        (1, "a", Decimal("1.50"), created),
        (2, blob, Decimal("0E-8"), None),
        (3, 'say "hi"', None, created),
    ]
    raw = [(key, note, 1.5, "2024-05-01 10:00:00") for key, note, _, _ in rows]
    replaced = {2: [row[2] for row in rows], 3: [row[3] for row in rows]}
    types = {type(None), int, float, str, bytes}
    for first in (True, False):
        chunk = ChunkRows(raw, 4, replaced, raw_types=types)
        expected = writer_class("order", columns).encode_rows(rows, first=first)
        assert writer_class("order", columns).encode_chunk(chunk, first=first) == expected


@pytest.mark.parametrize("writer_class", WRITERS)
def test_encode_chunk_is_encode_rows(writer_class: type[FormatWriter]) -> None:
    rows = mixed_rows()
    for seed in range(6):
        start = seed * 9
        part = rows[start : start + 30]
        chunk = as_chunk(part, len(COLUMNS), seed)
        assert chunk.rows() == part
        expected = writer_class("order", COLUMNS).encode_rows(part, first=seed == 0)
        assert writer_class("order", COLUMNS).encode_chunk(chunk, first=seed == 0) == expected
    assert writer_class("order", COLUMNS).encode_chunk(ChunkRows([], 14), first=True) == b""
    with pytest.raises(ValueError, match="2 values"):
        writer_class("order", ["a", "b"]).encode_chunk(ChunkRows([(1, 2, 3)], 3), first=True)


@pytest.mark.parametrize("seed", range(40))
def test_random_chunks(seed: int) -> None:
    rnd = random.Random(seed)
    columns = [f"c{i}" for i in range(rnd.randrange(1, 6))]
    kinds = [rnd.randrange(-1, 10) for _ in columns]
    rows = [
        tuple(
            None
            if rnd.random() < 0.2
            else random_value(rnd, kind if kind >= 0 else rnd.randrange(10))
            for kind in kinds
        )
        for _ in range(rnd.randrange(1, 30))
    ]
    for writer_class in WRITERS:
        expected = writer_class("svc", columns).encode_rows(rows, first=False)
        chunk = as_chunk(rows, len(columns), seed)
        assert writer_class("svc", columns).encode_chunk(chunk, first=False) == expected


@pytest.mark.parametrize("writer_class", WRITERS)
def test_a_subclass_that_changes_encode_rows_gets_the_chunks(
    writer_class: type[FormatWriter],
) -> None:
    class Upper(writer_class):  # type: ignore[misc, valid-type]
        def encode_rows(self, rows: Sequence[Sequence[Any]], *, first: bool) -> bytes:
            rows = [tuple(str(value).upper() for value in row) for row in rows]
            return super().encode_rows(rows, first=first)

    rows = [(1, "a"), (2, "b")]
    chunk = as_chunk(rows, 2, 0)
    expected = Upper("svc", ["n", "t"]).encode_rows(rows, first=True)
    assert b"A" in expected
    assert Upper("svc", ["n", "t"]).encode_chunk(chunk, first=True) == expected


def test_json_decimal_texts() -> None:
    decimals = [Decimal("1.50"), None, Decimal("0E-8"), Decimal("1E+3"), Decimal("-0.00")]
    assert decimal_texts(decimals, {Decimal, type(None)}) == [
        "1.50",
        None,
        "0.00000000",
        "1000",
        "-0.00",
    ]
    assert decimal_texts([Decimal("2.5"), 3, "x"], {Decimal, int, str}) == ["2.5", 3, "x"]
    assert decimal_texts([Decimal("NaN"), Decimal("-Infinity")], {Decimal}) == [
        "NaN",
        "-Infinity",
    ]
    writer = JSONWriter("svc", ["d", "t"])
    rows = [(Decimal("1E+3"), "1E+3"), (Decimal("0.10"), "e")]
    assert writer.encode_rows(rows, first=True) == (
        b'{"d":"1000","t":"1E+3"},\n{"d":"0.10","t":"e"}'
    )
