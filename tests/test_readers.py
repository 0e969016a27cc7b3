"""The PostgreSQL fast path writes exactly the bytes of the ORM reader and the Python writers.

For every demo service and every built-in format (whether or not the service offers it), with
awkward values placed in the data, small and large chunks, the formula guard on and off, and
through the whole job with gzip. PostgreSQL only: on SQLite the module is skipped.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import random
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings

from django_report_export import control
from django_report_export.columns import column_names, is_document
from django_report_export.formats import CSVWriter, JSONWriter, XMLWriter, get_writer_class
from django_report_export.formats.csv import CELL_BREAKS, FORMULA_SIGNS, LEADING_WHITESPACE
from django_report_export.formats.jsonl import JSONLinesWriter
from django_report_export.formats.xlsx import XLSXWriter
from django_report_export.models import ReportExport, Status
from django_report_export.query import export_queryset
from django_report_export.readers import OrmChunkReader, get_reader
from django_report_export.readers.base import ChunkReader
from django_report_export.readers.fast_path import ALL_FORMATS, postgres_reader
from django_report_export.readers.postgres import PostgresChunkReader
from django_report_export.readers.postgres_records import CELL_END, RECORD_END
from django_report_export.readers.postgres_xlsx import PostgresXLSXReader
from django_report_export.registry import site
from django_report_export.storage import get_storage
from testproject.shop.models import Category, CustomerAccount, Inquiry, Order, Product, Voucher

from .support.demo import flat_columns
from .support.formula_guard import guarded

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the fast path is PostgreSQL's"),
]

TEXT_FORMATS = ("csv", "json", "xml", "jsonl")
FORMATS = (*TEXT_FORMATS, "xlsx")
UTC = dt.UTC

#: Characters a PostgreSQL text can hold that a format treats specially (no NUL, no lone
#: surrogates: PostgreSQL cannot store them).
PALETTE = [
    *"ab ,;|\"'\\/\n\r\t<>&=+-@{}[]:.",
    "\x01",
    "\x0b",
    "\x0c",
    "\x1f",
    "\x7f",
    "\x85",
    "\u2028",
    "\ufffe",
    "\uffff",
    "\ufffd",
    "é",
    "日",
    "🎉",
    "]]>",
    "\\.",
    "\r\n",
    '""',
    "null",
    "},{",
    "\xa0",
    "\u3000",
    "\uff1d",
    "\uff0b",
    "\uff0d",
    "\uff20",
]
AWKWARD_TEXTS = [
    "",
    " ",
    "\\.",
    "=SUM(A1:A2)",
    "+1",
    "-1",
    "@cmd",
    "\tindented",
    "\rcarriage",
    "\ncarriage",
    'say "hi", then go',
    "line one\nline two\r\nline three\rend",
    "<b>&amp;</b> ]]> &#13;",
    "control \x01\x08\x0b\x0c\x0e\x1f and \ufffe\uffff",
    "Zoë 日本 🎉 \U0001d518 \u0301 \u2028 \x7f \x85",
    "back\\slash \\n \\u0000",
    '},{"id":1}',
    "null",
    # The formula guard's places: after whitespace, after each cell break, full-width signs.
    " =1+1",
    "\xa0\u3000@cmd",
    "\uff1d1+1",
    "\uff0bx \uff0dy \uff20z",
    "x;=1+1",
    ";=1",
    "a, -b; +c",
    "x\t\t=1",
    "first\n=1+1\r\n \uff1dx",
    " plain; text, only",
    "a|=1",
    "\t=1",
    "x;\ty",
    "one\r\n\r\n\tindented",
]


def random_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(PALETTE, k=rng.randint(1, 12))) for _ in range(count)]


def moments() -> list[dt.datetime]:
    """Datetimes with and without microseconds (Python writes six digits, or none)."""
    return [
        dt.datetime(2024, 5, 1, 10, 0, 0, 0, tzinfo=UTC),
        dt.datetime(2024, 5, 1, 10, 0, 0, 1, tzinfo=UTC),
        dt.datetime(2024, 5, 1, 10, 0, 0, 120000, tzinfo=UTC),
        dt.datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(1, 1, 1, 0, 0, 0, tzinfo=UTC),
        dt.datetime(999, 3, 4, 5, 6, 7, 80, tzinfo=UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    ]


@pytest.fixture
def shop() -> None:
    """The seeded demo shop, with awkward values placed in text, datetime, date and decimal
    columns of the services' tables, and NULLs through relations."""
    call_command("seed_shop", orders=240, customers=40, products=30, seed=7, verbosity=0)
    texts = AWKWARD_TEXTS + random_texts(60, seed=11)
    times = moments()
    with transaction.atomic():
        for index, inquiry in enumerate(Inquiry.objects.order_by("pk")):
            inquiry.subject = texts[index % len(texts)]
            inquiry.message = texts[(index * 7 + 3) % len(texts)]
            inquiry.email = texts[(index * 5 + 1) % len(texts)]
            inquiry.answered_at = times[index % len(times)] if index % 3 else None
            inquiry.created_at = times[(index + 2) % len(times)]
            if index % 4 == 0:
                inquiry.customer = None
            inquiry.save()
        for index, order in enumerate(Order.objects.order_by("pk")[:120]):
            order.note = texts[index % len(texts)]
            order.number = f"{texts[(index * 3) % len(texts)][:24]}#{index}"  # 32 at most
            order.paid_at = times[index % len(times)] if index % 2 else None
            order.subtotal = [
                Decimal("0.00"),
                Decimal("-0.01"),
                Decimal("9999999999.99"),
                Decimal("-9999999999.99"),
                Decimal("10.10"),
            ][index % 5]
            order.save()
        for index, customer in enumerate(CustomerAccount.objects.order_by("pk")):
            customer.first_name = texts[(index * 11) % len(texts)]
            customer.last_name = texts[(index * 13 + 5) % len(texts)]
            customer.birth_date = [
                None,
                dt.date(1, 1, 1),
                dt.date(9999, 12, 31),
                dt.date(1970, 1, 2),
            ][index % 4]
            customer.last_login_at = times[index % len(times)] if index % 2 else None
            customer.save()
        for index, category in enumerate(Category.objects.order_by("pk")):
            category.name = texts[(index * 17 + 2) % len(texts)]
            category.description = texts[(index * 19 + 4) % len(texts)]
            category.save()
        Product.objects.filter(pk=Product.objects.order_by("pk").first().pk).update(
            name="", description=""
        )
        Voucher.objects.filter(pk__in=Voucher.objects.order_by("pk")[:3]).update(
            preset=None, template=None, customer=None
        )
        # The largest keys PostgreSQL's bigint holds.
        Order.objects.create(
            pk=2**63 - 1,
            number="last",
            customer=CustomerAccount.objects.first(),
            status="paid",
            subtotal=Decimal("1.00"),
            total=Decimal("1.00"),
            payment_method="card",
            shipping_country="DE",
            note="",
        )


def export_bytes(reader: ChunkReader, chunk_size: int) -> bytes:
    """The whole file through ``reader``, as the job writes it."""
    writer = reader.writer
    parts = [writer.header()]
    processed, last_key = 0, None
    while True:
        chunk = reader.read(last_key, chunk_size, first=processed == 0)
        if chunk.count:
            parts.extend(chunk.pieces())
            processed += chunk.count
            last_key = chunk.last_key
        if chunk.count < chunk_size:
            break
    parts.append(writer.footer(empty=processed == 0))
    return b"".join(parts)


def both_readers(service_name: str, export_format: str) -> tuple[ChunkReader, ChunkReader]:
    service = site.get(service_name)
    names, fields = flat_columns(service)
    queryset = service.get_queryset().order_by("pk")
    writer = get_writer_class(export_format)(service_name, names)
    fast = postgres_reader(queryset, fields, writer, ALL_FORMATS)
    assert fast is not None, f"{service_name}/{export_format} is not on the fast path"
    return OrmChunkReader(
        queryset, fields, get_writer_class(export_format)(service_name, names)
    ), fast


#: The flat services (documents take the generic path: tests/test_documents.py).
SERVICES = [service.name for service in site if not is_document(service)]


@pytest.mark.parametrize("export_format", FORMATS)
def test_every_service_same_bytes(shop: Any, export_format: str) -> None:
    for service_name in SERVICES:
        orm, fast = both_readers(service_name, export_format)
        for chunk_size in (7, 100, 5000):
            expected = export_bytes(orm, chunk_size)
            assert export_bytes(fast, chunk_size) == expected, (service_name, chunk_size)


@pytest.mark.parametrize("export_format", FORMATS)
def test_chunk_boundaries_and_segments(shop: Any, export_format: str, monkeypatch: Any) -> None:
    """Chunks that end exactly at the last row, segments of a few chunks, a chunk of one."""
    import django_report_export.readers.postgres as postgres

    monkeypatch.setattr(postgres, "SEGMENT_CHUNKS", 3)
    orm, fast = both_readers("orderRow", export_format)
    rows = Order.objects.count()
    for chunk_size in (1, 2, rows, rows - 1, rows + 1, rows // 3):
        assert export_bytes(fast, chunk_size) == export_bytes(orm, chunk_size), chunk_size


def test_the_first_segment_is_one_chunk_and_the_next_ones_are_whole(
    shop: Any, monkeypatch: Any
) -> None:
    """The first rows do not wait for the database to build a whole segment: a stream's
    first COPY is of one chunk, the next of ``SEGMENT_CHUNKS``."""
    import django_report_export.readers.postgres as postgres

    monkeypatch.setattr(postgres, "SEGMENT_CHUNKS", 3)
    segment = postgres._segment
    counted: list[int] = []

    def recorded(ends: list[Any], count: int, limit: int, piece: int) -> Any:
        counted.append(count)
        return segment(ends, count, limit, piece)

    monkeypatch.setattr(postgres, "_segment", recorded)
    # JSON: some of the shop's texts hold a unit separator, which restarts a CSV stream.
    orm, fast = both_readers("orderRow", "json")
    rows = Order.objects.count()
    assert export_bytes(fast, 2) == export_bytes(orm, 2)
    assert counted[:2] == [2, 6]
    assert sum(counted) == rows


def test_pieces_and_segments(shop: Any, monkeypatch: Any) -> None:
    """Chunks of several pieces, a last piece or chunk cut short, pieces of one row."""
    import django_report_export.readers.postgres as postgres

    monkeypatch.setattr(postgres, "SEGMENT_CHUNKS", 2)
    rows = Order.objects.count()
    chunk_sizes = (1, 2, 3, 4, 7, 30, rows - 1, rows)
    for export_format in FORMATS:
        orm = both_readers("orderRow", export_format)[0]
        # A workbook's bytes depend on its chunks: each is a piece of the sheet's deflate.
        expected = {size: export_bytes(orm, size) for size in chunk_sizes}
        for piece_rows in (1, 3, 10):
            monkeypatch.setattr(postgres, "PIECE_ROWS", piece_rows)
            fast = both_readers("orderRow", export_format)[1]
            for size in chunk_sizes:
                assert export_bytes(fast, size) == expected[size], (piece_rows, size)


#: Every character a PostgreSQL text can hold that some format escapes, replaces or quotes.
HOSTILE_TEXTS = [
    *(f"a{chr(code)}b" for code in range(1, 0x20)),
    *(chr(code) for code in range(1, 0x20)),
    "\ufffe",
    "\uffff",
    "x\ufffey\uffffz\ufffd",
    "\uffef\uefbf",
    "<order>&lt;</order>",
    "]]>",
    "&#13;",
    "\r\n\r",
    '"",,"\n',
    '\\"\\',
    "=1+2",
    "\r=",
    "\u0085\u2028\u2029\x7f",
    "🎉\U0010fffd",
    "",
]


@pytest.mark.parametrize("export_format", FORMATS)
def test_every_escaped_character(shop: Any, export_format: str) -> None:
    """Each control character alone and inside text, XML's noncharacters and markup, CSV's
    quotes and formulas, JSON's escapes: the same bytes on both paths, chunk by chunk."""
    times = moments()
    for index, inquiry in enumerate(Inquiry.objects.order_by("pk")):
        text = HOSTILE_TEXTS[index % len(HOSTILE_TEXTS)]
        inquiry.subject = text
        inquiry.message = text[::-1] + text
        inquiry.email = HOSTILE_TEXTS[(index + 7) % len(HOSTILE_TEXTS)]
        inquiry.answered_at = None if index % 3 == 0 else times[index % len(times)]
        inquiry.save()
    orm, fast = both_readers("inquiry", export_format)
    for chunk_size in (1, 5, 1000):
        assert export_bytes(fast, chunk_size) == export_bytes(orm, chunk_size), chunk_size


@pytest.mark.parametrize("guard", [True, False])
def test_every_place_of_the_formula_guard(shop: Any, guard: bool) -> None:
    """Each whitespace character before each formula sign (and before a letter), at a text's
    start and after each cell break: the same bytes on both paths, the guard on and off."""
    signs = [*FORMULA_SIGNS, "x"]
    Inquiry.objects.bulk_create(
        Inquiry(
            email="guard@example.com",
            subject=f"{space}{sign}1",
            message="".join(f"{brk}{space}{other}1" for brk in CELL_BREAKS for other in signs),
        )
        for space in ["", *LEADING_WHITESPACE]
        for sign in signs
    )
    with override_settings(REPORT_EXPORT={"CSV_FORMULA_GUARD": guard}):
        orm, fast = both_readers("inquiry", "csv")
    data = export_bytes(fast, 1000)
    assert data == export_bytes(orm, 1000)
    records = list(csv.DictReader(io.StringIO(data.decode(), newline="")))
    messages = {str(pk): message for pk, message in Inquiry.objects.values_list("pk", "message")}
    assert len(records) == len(messages)
    for record in records:
        message = messages[record["id"]]
        assert record["message"] == (guarded(message) if guard else message)


def test_one_column_csv(shop: Any) -> None:
    """A record of one empty cell (an empty text, a NULL) is written "", not an empty line."""
    Inquiry.objects.filter(pk__in=Inquiry.objects.order_by("pk")[:5]).update(subject="")
    queryset = site.get("inquiry").get_queryset().order_by("pk")
    for field in ("subject", "answered_at", "customer_id", "message"):
        fast = postgres_reader(queryset, [field], CSVWriter("inquiry", [field]))
        assert fast is not None
        orm = OrmChunkReader(queryset, [field], CSVWriter("inquiry", [field]))
        assert export_bytes(fast, 6) == export_bytes(orm, 6), field


def test_any_time_zone(shop: Any) -> None:
    """Django's ``TIME_ZONE`` does not change the values it returns (aware, in UTC)."""
    for zone in ("Asia/Kathmandu", "America/St_Johns"):
        with override_settings(TIME_ZONE=zone):
            for export_format in FORMATS:
                orm, fast = both_readers("inquiry", export_format)
                assert export_bytes(fast, 40) == export_bytes(orm, 40), (zone, export_format)


def pieces_plan(reader: Any) -> str:
    """``EXPLAIN`` of the query of a segment holding every row, on the stream's connection."""
    sql, params = reader.plan.pieces_sql(None, Order.objects.order_by("-pk")[0].pk, [3, 70])
    select = sql.removeprefix("COPY (").removesuffix(") TO STDOUT WITH (FORMAT binary)")
    stream_connection = connection.copy()
    try:
        with stream_connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {select}", params)
            return "\n".join(row[0] for row in cursor.fetchall())
    finally:
        stream_connection.close()


def test_parallel_plans(shop: Any) -> None:
    """Records built by parallel workers, below the sort, come out in key order all the same."""
    options = dict(connection.settings_dict.get("OPTIONS") or {})
    parallel = (
        "-c parallel_setup_cost=0 -c parallel_tuple_cost=0 -c min_parallel_table_scan_size=0 "
        "-c min_parallel_index_scan_size=0 -c max_parallel_workers_per_gather=4"
    )
    options["options"] = f"{options.get('options', '')} {parallel}".strip()
    settings_dict = {**connection.settings_dict, "OPTIONS": options}
    original = connection.settings_dict
    connection.settings_dict = settings_dict  # The stream's connection is a copy of it.
    try:
        for export_format in FORMATS:
            orm, fast = both_readers("orderRow", export_format)
            assert "Gather Merge" in pieces_plan(fast), export_format
            for chunk_size in (3, 100):
                assert export_bytes(fast, chunk_size) == export_bytes(orm, chunk_size)
            fast.close()
    finally:
        connection.settings_dict = original


def test_formula_guard_off(shop: Any) -> None:
    with override_settings(REPORT_EXPORT={"CSV_FORMULA_GUARD": False}):
        for service_name in ("orderRow", "inquiry", "category", "customerAccount"):
            orm, fast = both_readers(service_name, "csv")
            assert not fast.writer.formula_guard  # type: ignore[attr-defined]
            assert export_bytes(fast, 50) == export_bytes(orm, 50)


def bytes_and_python_quotes(
    reader: PostgresChunkReader, chunk_size: int
) -> tuple[bytes, list[bool]]:
    """The whole file through ``reader``, and after each chunk whether Python still quotes
    the CSV cells (``plan.csv``) or the database has taken over."""
    parts = [reader.writer.header()]
    in_python = []
    last_key = None
    while True:
        chunk = reader.read(last_key, chunk_size, first=last_key is None)
        parts.extend(chunk.pieces())
        last_key = chunk.last_key
        in_python.append(reader.plan.csv is not None)
        if chunk.count < chunk_size:
            return b"".join(parts), in_python


def test_csv_texts_are_quoted_in_python_and_a_separator_in_a_text_falls_back(shop: Any) -> None:
    """CSV records come unquoted, their cells and records ended by the file and group
    separators, and Python quotes them; where a text holds one of those, the records are
    quoted by the database from that chunk on: the same bytes either way."""
    pks = list(Inquiry.objects.order_by("pk").values_list("pk", flat=True))
    assert len(pks) >= 12
    Inquiry.objects.filter(pk__in=pks).update(
        email="a@example.com", subject="plain", message="plain"
    )
    Inquiry.objects.filter(pk=pks[9]).update(message='a, b; =c "d"')
    Inquiry.objects.filter(pk=pks[7]).update(subject=f"record{RECORD_END.decode()}end")
    Inquiry.objects.filter(pk=pks[10]).update(message=f"=cell{CELL_END.decode()}end")
    orm, fast = both_readers("inquiry", "csv")
    assert isinstance(fast, PostgresChunkReader)
    assert fast.plan.csv is not None
    data, in_python = bytes_and_python_quotes(fast, 2)
    assert in_python[:3] == [True] * 3  # 6 rows: no separator in a text yet
    assert not in_python[-1]
    assert data == export_bytes(orm, 2)


def test_csv_cells_are_quoted_by_the_database_once_most_records_need_quotes(shop: Any) -> None:
    """Where a chunk had more than one quoted cell for every ``SQL_QUOTES_ABOVE`` records, the
    next chunks' cells are quoted by the database: the same bytes either way."""
    pks = list(Inquiry.objects.order_by("pk").values_list("pk", flat=True))
    Inquiry.objects.filter(pk__in=pks).update(email="a@example.com", subject="plain")
    Inquiry.objects.filter(pk__in=pks).update(message="plain")
    Inquiry.objects.filter(pk=pks[1]).update(message="few; quoted")  # 1 in 4: kept
    Inquiry.objects.filter(pk__in=pks[4:6]).update(message="two, quoted", subject="a|b")
    orm, fast = both_readers("inquiry", "csv")
    assert isinstance(fast, PostgresChunkReader)
    data, in_python = bytes_and_python_quotes(fast, 4)
    assert in_python == [True] + [False] * (len(in_python) - 1)
    assert data == export_bytes(orm, 4)


def test_csv_records_quoted_in_python_unless_one_column_or_decimal_commas(shop: Any) -> None:
    queryset = site.get("orderRow").get_queryset().order_by("pk")

    def reader(fields: list[str], **options: str) -> PostgresChunkReader:
        writer = CSVWriter("orderRow", fields)
        writer.options = replace(writer.options, **options)
        fast = postgres_reader(queryset, fields, writer)
        assert isinstance(fast, PostgresChunkReader)
        return fast

    assert reader(["number", "total"]).plan.csv is not None
    assert reader(["number", "total"], delimiter=";", line_ending="crlf").plan.csv is not None
    assert reader(["number"]).plan.csv is None
    assert reader(["number", "total"], decimal_separator=",").plan.csv is None


def test_filtered_and_subset_exports(shop: Any) -> None:
    service = site.get("inquiry")
    queryset = service.get_queryset().filter(customer__isnull=False).order_by("pk")
    for fields in (["message", "id"], ["customer__email", "answered_at"], ["subject", "status"]):
        for export_format in FORMATS:
            writer = get_writer_class(export_format)("inquiry", fields)
            fast = postgres_reader(queryset, fields, writer, ALL_FORMATS)
            assert fast is not None
            orm = OrmChunkReader(
                queryset, fields, get_writer_class(export_format)("inquiry", fields)
            )
            assert export_bytes(fast, 9) == export_bytes(orm, 9), (fields, export_format)


def test_resume_on_a_new_reader_and_read_again(shop: Any) -> None:
    """A paused export continues from its checkpoint in another reader (another worker); a
    reader asked for an earlier key than it streamed to starts a new stream there."""
    orm, fast = both_readers("orderRow", "json")
    expected = export_bytes(orm, 25)
    writer = fast.writer
    parts = [writer.header()]
    first = fast.read(None, 25, first=True)
    second = fast.read(first.last_key, 25, first=False)
    again = fast.read(first.last_key, 25, first=False)  # a retried read
    assert again == second
    fast.close()
    parts += [*first.pieces(), *second.pieces()]
    resumed = both_readers("orderRow", "json")[1]
    processed, last_key = first.count + second.count, second.last_key
    while True:
        chunk = resumed.read(last_key, 25, first=False)
        parts.extend(chunk.pieces())
        processed += chunk.count
        last_key = chunk.last_key
        if chunk.count < 25:
            break
    parts.append(writer.footer(empty=False))
    assert b"".join(parts) == expected


def test_empty_export(shop: Any) -> None:
    for export_format in FORMATS:
        service = site.get("orderRow")
        fields = list(service.fields)
        queryset = service.get_queryset().filter(pk__lt=0).order_by("pk")
        fast = postgres_reader(
            queryset, fields, get_writer_class(export_format)("orderRow", fields), ALL_FORMATS
        )
        orm = OrmChunkReader(queryset, fields, get_writer_class(export_format)("orderRow", fields))
        assert fast is not None
        assert export_bytes(fast, 10) == export_bytes(orm, 10)


# --- The job, end to end ----------------------------------------------------------------------


def run_job(worker: Any, service_name: str, export_format: str, compression: str) -> bytes:
    service = site.get(service_name)
    request = control.ExportRequest(
        format=export_format, fields=column_names(service), compression=compression
    )
    status = control.start(service, request)
    worker()
    export = ReportExport.objects.get(pk=status["id"])
    assert export.status == Status.FINISHED, export.error
    with get_storage().open(export.file_name, "rb") as file:
        return file.read()


@pytest.mark.parametrize("export_format", TEXT_FORMATS)
def test_job_gzip_same_bytes_on_both_paths(shop: Any, worker: Any, export_format: str) -> None:
    with override_settings(REPORT_EXPORT={"QUEUE": "default", "CHUNK_SIZE": 37}):
        fast = run_job(worker, "inquiry", export_format, "gzip")
    with override_settings(
        REPORT_EXPORT={"QUEUE": "default", "CHUNK_SIZE": 37, "FAST_PATH": False}
    ):
        slow = run_job(worker, "inquiry", export_format, "gzip")
    assert fast == slow
    assert gzip.decompress(fast).count(b"\n") > 10


# --- When the fast path steps aside ----------------------------------------------------------


def order_reader(**kwargs: Any) -> ChunkReader:
    service = site.get("orderRow")
    fields = kwargs.pop("fields", list(service.fields))
    queryset = kwargs.pop("queryset", service.get_queryset().order_by("pk"))
    writer = kwargs.pop("writer", None) or JSONWriter("orderRow", fields)
    return get_reader(queryset, fields, writer)


def test_get_reader_picks_the_fast_path(db: Any) -> None:
    assert isinstance(order_reader(), PostgresChunkReader)
    fields = list(site.get("orderRow").fields)
    for writer_class in (CSVWriter, JSONWriter, JSONLinesWriter, XMLWriter, XLSXWriter):
        reader = order_reader(writer=writer_class("orderRow", fields))
        assert isinstance(reader, PostgresChunkReader), writer_class
    assert isinstance(order_reader(writer=XLSXWriter("orderRow", fields)), PostgresXLSXReader)
    with override_settings(REPORT_EXPORT={"FAST_PATH": False}):
        assert isinstance(order_reader(), OrmChunkReader)


def test_fallbacks(db: Any) -> None:
    service = site.get("orderRow")
    queryset = service.get_queryset().order_by("pk")

    class ProjectCSV(CSVWriter):
        pass

    assert isinstance(order_reader(writer=ProjectCSV("orderRow", service.fields)), OrmChunkReader)
    assert isinstance(
        order_reader(fields=["note"], writer=CSVWriter("orderRow", ["note"])), PostgresChunkReader
    )
    assert isinstance(order_reader(queryset=queryset.distinct()), OrmChunkReader)
    # JSON columns: ReportExport's own table (its UUID key alone would take the fast path).
    exports = ReportExport.objects.order_by("pk")
    writer = XMLWriter("exports", ["service", "fields"])
    assert isinstance(get_reader(exports, ["service", "fields"], writer), OrmChunkReader)
    # Inside a transaction the reader's own connection would not see its rows.
    with transaction.atomic():
        assert isinstance(order_reader(), OrmChunkReader)


def test_export_queryset_of_the_job_is_on_the_fast_path(shop: Any) -> None:
    export = ReportExport(
        service="orderRow", format="csv", fields=list(site.get("orderRow").fields)
    )
    queryset = export_queryset(site.get("orderRow"), export)
    writer = CSVWriter("orderRow", export.fields)
    assert isinstance(get_reader(queryset, export.fields, writer), PostgresChunkReader)


def backend_gone(pid: int) -> bool:
    """Whether the server session ``pid`` has ended (a closed client's ends shortly after)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if not cursor.fetchone()[0]:
                return True
        time.sleep(0.05)
    return False


def stream_pid(reader: Any) -> int:
    return int(reader._stream.connection.connection.info.backend_pid)


def test_the_stream_ends_with_the_export_or_the_reader(shop: Any) -> None:
    """No reader leaves a connection or an open transaction behind: not at the end of an
    export, not when the job stops reading (pause, cancel) and drops the reader."""
    # JSON: the shop's CSV cells need so many quotes that a CSV stream restarts.
    fast = both_readers("orderRow", "json")[1]
    first = fast.read(None, 50, first=True)
    pid = stream_pid(fast)
    while (chunk := fast.read(first.last_key, 50, first=False)).count == 50:
        first = chunk
    assert fast._stream.connection is None  # type: ignore[attr-defined]
    assert backend_gone(pid)
    fast = both_readers("orderRow", "xml")[1]
    fast.read(None, 50, first=True)
    pid = stream_pid(fast)
    del fast
    assert backend_gone(pid)
