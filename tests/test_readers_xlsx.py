"""The PostgreSQL fast path writes the workbook of the generic path byte for byte: the cells
of values at the edges of Excel's dates and of a double's exactness, the second sheet, and a
continuation from a checkpoint state in another reader. PostgreSQL only."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from typing import Any

import openpyxl
import pytest
from django.core.management import call_command
from django.db import connection

from django_report_export.formats import xlsx
from django_report_export.formats.xlsx import XLSXWriter
from django_report_export.readers import OrmChunkReader
from django_report_export.readers.fast_path import postgres_reader
from django_report_export.readers.postgres_xlsx import PostgresXLSXReader
from django_report_export.registry import site
from testproject.shop.models import CustomerAccount, Inquiry, Order

from .test_readers import both_readers, export_bytes

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the fast path is PostgreSQL's"),
]

UTC = dt.UTC
#: Datetimes around what Excel's serials and a double's exactness make special.
EDGE_DATETIMES = [
    dt.datetime(1900, 2, 28, 23, 59, 59, 999999, tzinfo=UTC),  # before Excel's dates: text
    dt.datetime(1900, 3, 1, tzinfo=UTC),
    dt.datetime(1900, 3, 1, 0, 0, 0, 1, tzinfo=UTC),
    dt.datetime(2024, 2, 29, tzinfo=UTC),  # a whole day: "45351.0"
    dt.datetime(2024, 2, 29, 12, tzinfo=UTC),
    dt.datetime(2024, 7, 1, 8, 30, 15, 123456, tzinfo=UTC),
    dt.datetime(2184, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    dt.datetime(2185, 1, 1, 0, 0, 0, 1, tzinfo=UTC),  # past 2**53 microseconds
    dt.datetime(2185, 6, 3, 17, 59, 0, 740993, tzinfo=UTC),
    dt.datetime(5000, 1, 1, 0, 0, 1, tzinfo=UTC),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    dt.datetime(1, 1, 1, tzinfo=UTC),
]
EDGE_DATES = [
    dt.date(1900, 2, 28),
    dt.date(1900, 3, 1),
    dt.date(1, 1, 1),
    dt.date(999, 12, 31),
    dt.date(9999, 12, 31),
    None,
]
TEXTS = ["_x0041_", "a_x00e9_b_X0041_", "_x004_", "__x0041__", "x_", "", "<&>\"'\r\x01\ufffe"]


@pytest.fixture
def customers() -> None:
    call_command("seed_shop", orders=30, customers=len(EDGE_DATETIMES) * 3, seed=3, verbosity=0)
    for index, customer in enumerate(CustomerAccount.objects.order_by("pk")):
        customer.created_at = EDGE_DATETIMES[index % len(EDGE_DATETIMES)]
        customer.last_login_at = EDGE_DATETIMES[(index * 5 + 1) % len(EDGE_DATETIMES)]
        customer.birth_date = EDGE_DATES[index % len(EDGE_DATES)]
        customer.first_name = TEXTS[index % len(TEXTS)]
        customer.is_active = index % 3 != 0
        customer.save()
    with connection.cursor() as cursor:  # Django's DecimalField cannot save a NaN.
        table = CustomerAccount._meta.db_table
        cursor.execute(f"UPDATE {table} SET credit_balance = 'NaN' WHERE id % 4 = 0")


def sheets(data: bytes) -> list[str]:
    """Each part of the workbook, its XML cut after each cell (readable differences)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [
            archive.read(name).decode().replace("</c>", "</c>\n") for name in archive.namelist()
        ]


def same_bytes(service: str, chunk_sizes: tuple[int, ...] = (1, 4, 1000)) -> bytes:
    orm, fast = both_readers(service, "xlsx")
    assert isinstance(fast, PostgresXLSXReader)
    expected = b""
    for chunk_size in chunk_sizes:
        expected = export_bytes(orm, chunk_size)
        data = export_bytes(fast, chunk_size)
        for got, want in zip(sheets(data), sheets(expected), strict=True):
            assert got.splitlines() == want.splitlines(), chunk_size
        assert data == expected, chunk_size
    return expected


def test_edge_values_give_the_same_cells(customers: Any) -> None:
    data = same_bytes("customerAccount")
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    header = [cell.value for cell in sheet[1]]
    rows = [dict(zip(header, row, strict=True)) for row in sheet.iter_rows(2, values_only=True)]
    created = [row["created_at"] for row in rows]
    assert created[0] == EDGE_DATETIMES[0].isoformat()  # text: before Excel's 1900-03-01
    assert created[3] == dt.datetime(2024, 2, 29)
    assert created[5] == dt.datetime(2024, 7, 1, 8, 30, 15, 123000)  # openpyxl: milliseconds
    # openpyxl reads "_x005F_" as written; Excel reads it as "_".
    assert rows[0]["first_name"] == "_x005F_x0041_"
    assert rows[4]["first_name"] == "x_"
    assert rows[6]["first_name"] == "<&>\"'\r\ufffd\ufffd"
    assert [row["is_active"] for row in rows[:3]] == [False, True, True]
    assert rows[1]["birth_date"] == dt.datetime(1900, 3, 1)
    assert rows[2]["birth_date"] == "0001-01-01"


def test_widths_come_from_the_first_chunk_on_both_paths(customers: Any) -> None:
    CustomerAccount.objects.filter(pk=CustomerAccount.objects.order_by("pk")[0].pk).update(
        first_name="A much longer first name than any other"
    )
    same_bytes("customerAccount", chunk_sizes=(1, 2, 1000))


def test_rows_past_the_sheet_limit_continue_on_another_sheet(monkeypatch: Any) -> None:
    call_command("seed_shop", orders=23, seed=5, verbosity=0)
    monkeypatch.setattr(xlsx, "SHEET_ROWS", 6)  # the header row and five rows a sheet
    data = same_bytes("orderRow", chunk_sizes=(1, 3, 5, 7, 100))
    workbook = openpyxl.load_workbook(io.BytesIO(data))
    assert [sheet.max_row for sheet in workbook.worksheets] == [6, 6, 6, 6, 4]
    ids = [row[0] for sheet in workbook.worksheets for row in sheet.iter_rows(2, values_only=True)]
    assert ids == list(Order.objects.order_by("pk").values_list("pk", flat=True))


@pytest.mark.parametrize("limit", [xlsx.SHEET_ROWS, 4])
def test_a_continuation_in_another_reader_gives_the_same_bytes(monkeypatch: Any, limit) -> None:
    """A paused export goes on in another worker: a new writer from the checkpoint state, and
    a new reader from the checkpoint's key."""
    call_command("seed_shop", orders=40, seed=9, verbosity=0)
    monkeypatch.setattr(xlsx, "SHEET_ROWS", limit)
    expected = same_bytes("orderRow", chunk_sizes=(6,))
    service = site.get("orderRow")
    fields = list(service.fields)
    queryset = service.get_queryset().order_by("pk")
    writer = XLSXWriter("orderRow", fields)
    first_reader = postgres_reader(queryset, fields, writer)
    assert first_reader is not None
    parts = [writer.header()]
    last_key = None
    for _ in range(3):
        chunk = first_reader.read(last_key, 6, first=last_key is None)
        parts.append(chunk.data)
        last_key = chunk.last_key
    first_reader.close()
    state = writer.checkpoint_state(18)
    resumed = XLSXWriter("orderRow", fields)
    resumed.resume_state(state)
    reader = postgres_reader(queryset, fields, resumed)
    assert reader is not None
    while True:
        chunk = reader.read(last_key, 6, first=False)
        parts.append(chunk.data)
        last_key = chunk.last_key
        if chunk.count < 6:
            break
    parts.append(resumed.footer(empty=False))
    assert b"".join(parts) == expected


def test_empty_and_filtered_exports(customers: Any) -> None:
    Inquiry.objects.all().delete()
    same_bytes("inquiry")
    fields = ["first_name", "is_active", "birth_date"]
    queryset = site.get("customerAccount").get_queryset().filter(is_active=True).order_by("pk")
    fast = postgres_reader(queryset, fields, XLSXWriter("customerAccount", fields))
    orm = OrmChunkReader(queryset, fields, XLSXWriter("customerAccount", fields))
    assert fast is not None
    assert export_bytes(fast, 5) == export_bytes(orm, 5)
