"""The xlsx format: typed cells read back by openpyxl and by LibreOffice, a second sheet past
Excel's row limit, and the same bytes however often an export was paused, continued on
another worker or asked for in shards (docs/formats.md). Every demo service's xlsx export is
compared with the database in test_exports_roundtrip.py."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import shutil
import subprocess
import time
import uuid
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from django.core.management import call_command

from django_report_export import control
from django_report_export.formats import xlsx, xlsx_cells
from django_report_export.formats.base import ChunkRows
from django_report_export.formats.xlsx import XLSXWriter
from django_report_export.models import ReportExport, ReportExportShard, Status
from django_report_export.registry import site
from django_report_export.runs.plan import plan
from testproject.shop.factories import ProductFactory
from testproject.shop.models import Order

from .support.polling import while_running
from .support.workers import WorkerProcess, wait_for

UTC = dt.UTC
COLUMNS = ["id", "name", "price", "paid", "created", "day", "at", "note", "ratio"]


def typed_rows(count: int, start: int = 0) -> list[tuple[Any, ...]]:
    return [
        (
            number,
            f'Tür <{number}> & "Co"\r\nline\x0b {"=1+2" if number % 3 == 0 else ""}',
            Decimal(f"{number}.50"),
            number % 2 == 0,
            dt.datetime(2024, 5, 1, 10, 30, 15, 250000, tzinfo=UTC) + dt.timedelta(days=number),
            dt.date(2024, 1, 1) + dt.timedelta(days=number),
            dt.time(8, 15, 30),
            None if number % 2 else f"  padded {number}  ",
            number / 8,
        )
        for number in range(start, start + count)
    ]


def workbook_bytes(
    rows: list[tuple[Any, ...]], chunk: int, columns: list[str] = COLUMNS, service: str = "order"
) -> bytes:
    """The bytes of an export written in one run, ``chunk`` rows a chunk."""
    writer = XLSXWriter(service, columns)
    pieces = [writer.header()]
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        pieces.append(writer.encode_chunk(ChunkRows(part, len(columns)), first=start == 0))
    pieces.append(writer.footer(empty=not rows))
    return b"".join(pieces)


def read(data: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(data))


def test_cells_are_typed_and_the_header_is_bold_and_frozen() -> None:
    data = workbook_bytes(typed_rows(4), chunk=3)
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    book = read(data)
    sheet = book.active
    assert sheet.title == "order"
    assert sheet.freeze_panes == "A2"
    assert [cell.value for cell in sheet[1]] == COLUMNS
    assert all(cell.font.b for cell in sheet[1])
    assert not sheet["A2"].font.b
    rows = list(sheet.iter_rows(min_row=2, values_only=True))
    assert rows[0] == (
        0,
        'Tür <0> & "Co"\r\nline\ufffd =1+2',  # a formula's text stays text, unguarded
        0.5,
        True,
        dt.datetime(2024, 5, 1, 10, 30, 15, 250000),
        dt.datetime(2024, 1, 1),
        dt.time(8, 15, 30),
        "  padded 0  ",
        0.0,
    )
    assert (rows[1][3], rows[1][7], rows[1][8]) == (False, None, 0.125)
    assert [sheet[name].data_type for name in ("A2", "B2", "C2", "D2")] == ["n", "s", "n", "b"]
    assert [sheet[name].is_date for name in ("E2", "F2", "G2")] == [True, True, True]
    assert sheet["E2"].number_format == "yyyy\\-mm\\-dd\\ hh:mm:ss"
    assert sheet["F2"].number_format == "yyyy\\-mm\\-dd"


def test_column_widths_come_from_the_first_chunk() -> None:
    rows = [(1, "short"), (2, "x" * 30), (3, "y" * 500)]
    sheet = read(workbook_bytes(rows, chunk=2, columns=["id", "name"])).active
    assert sheet.column_dimensions["A"].width == xlsx_cells.MIN_WIDTH
    assert sheet.column_dimensions["B"].width == 32  # the longest text of the first chunk, + 2
    wide = read(workbook_bytes(rows, chunk=3, columns=["id", "name"])).active
    assert wide.column_dimensions["B"].width == xlsx_cells.MAX_WIDTH


def test_values_excel_cannot_hold_as_they_are_become_text() -> None:
    key = uuid.UUID("12345678-1234-5678-1234-567812345678")
    row = (
        key,
        {"a": [1, "b"]},
        float("nan"),
        Decimal("Infinity"),
        dt.date(1899, 12, 31),
        dt.timedelta(days=1, seconds=5),
        b"\x00\xff",
        2**70,
        "\ud800 lone",
    )
    columns = [f"c{index}" for index in range(len(row))]
    sheet = read(workbook_bytes([row], chunk=1, columns=columns)).active
    assert [cell.value for cell in sheet[2]] == [
        str(key),
        '{"a":[1,"b"]}',
        "nan",
        "Infinity",
        "1899-12-31",
        "P1DT00H00M05S",
        "AP8=",
        2**70,
        "\ufffd lone",
    ]


def test_an_export_without_rows_is_a_workbook_of_the_header_row() -> None:
    sheet = read(workbook_bytes([], chunk=5)).active
    assert list(sheet.iter_rows(values_only=True)) == [tuple(COLUMNS)]


def test_the_same_rows_give_the_same_bytes() -> None:
    data = workbook_bytes(typed_rows(20), chunk=6)
    assert data == workbook_bytes(typed_rows(20), chunk=6)
    for info in zipfile.ZipFile(io.BytesIO(data)).infolist():
        assert info.date_time == (1980, 1, 1, 0, 0, 0)


def test_rows_past_the_sheet_limit_continue_on_another_sheet(monkeypatch) -> None:
    monkeypatch.setattr(xlsx, "SHEET_ROWS", 5)  # the header row and four rows a sheet
    rows = typed_rows(10)
    book = read(workbook_bytes(rows, chunk=3))
    assert book.sheetnames == ["order", "order (2)", "order (3)"]
    got = []
    for sheet in book.worksheets:
        values = list(sheet.iter_rows(values_only=True))
        assert values[0] == tuple(COLUMNS)  # every sheet has the header row
        assert sheet.freeze_panes == "A2"
        got += [row[0] for row in values[1:]]
    assert got == list(range(10))
    assert [sheet.max_row for sheet in book.worksheets] == [5, 5, 3]
    # A sheet filled exactly is not followed by an empty one.
    assert read(workbook_bytes(typed_rows(8), chunk=4)).sheetnames == ["order", "order (2)"]


@pytest.mark.parametrize("limit", [xlsx.SHEET_ROWS, 6])
def test_a_continuation_from_a_checkpoint_state_gives_the_same_bytes(monkeypatch, limit) -> None:
    """At every chunk, a checkpoint as the job stores it (JSON), and a new writer going on
    from it; the chunk after a checkpoint read but never written (a pause) is dropped."""
    monkeypatch.setattr(xlsx, "SHEET_ROWS", limit)
    rows = typed_rows(17)
    expected = workbook_bytes(rows, chunk=4)
    for stop in range(0, len(rows) + 1, 4):
        writer = XLSXWriter("order", COLUMNS)
        pieces = [writer.header()]
        for start in range(0, stop, 4):
            pieces.append(writer.encode_chunk(ChunkRows(rows[start : start + 4], 9), first=False))
        writer.encode_chunk(ChunkRows(rows[stop : stop + 4], 9), first=False)  # not written
        state = json.loads(json.dumps(writer.checkpoint_state(stop)))
        resumed = XLSXWriter("order", COLUMNS)
        resumed.resume_state(state)
        for start in range(stop, len(rows), 4):
            pieces.append(resumed.encode_chunk(ChunkRows(rows[start : start + 4], 9), first=False))
        pieces.append(resumed.footer(empty=False))
        assert b"".join(pieces) == expected, f"continued after {stop} rows"


def test_a_checkpoint_state_of_rows_never_encoded_is_an_error() -> None:
    writer = XLSXWriter("order", COLUMNS)
    writer.header()
    with pytest.raises(RuntimeError):
        writer.checkpoint_state(3)


# --- Through the API and real workers ----------------------------------------------------


def download(api, service: str) -> bytes:
    response = api.get(f"/api/report/{service}/download")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == XLSXWriter.content_type
    assert response["Content-Disposition"].endswith('.xlsx"')
    return b"".join(response.streaming_content)


def export_file(api, worker, service: str) -> bytes:
    response = api.post(f"/api/report/{service}/start?format=xlsx")
    assert response.status_code == 202, response.content
    worker()
    assert api.get(f"/api/report/{service}/status").json()["status"] == Status.FINISHED
    return download(api, service)


def use(settings, **values: Any) -> None:
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **values}


@pytest.mark.django_db(transaction=True)
def test_pause_and_resume_give_the_same_workbook(api, worker, settings) -> None:
    ProductFactory.create_batch(60)
    use(settings, CHUNK_SIZE=4, CHECKPOINT_INTERVAL=0)
    uninterrupted = export_file(api, worker, "product")

    api.post("/api/report/product/start?format=xlsx")
    poller = while_running("product", 20, control.pause)
    worker()
    poller.join()
    assert poller.error is None
    export = ReportExport.objects.get(status=Status.PAUSED)
    assert 20 <= export.checkpoint["processed"] < 60
    assert export.checkpoint["writer"]["rows"] == export.checkpoint["processed"]
    assert api.post("/api/report/product/resume").status_code == 200
    worker()
    assert download(api, "product") == uninterrupted
    sheet = read(uninterrupted).active
    assert sheet.max_row == 61
    ids = sorted(site.get("product").get_queryset().values_list("pk", flat=True))
    assert [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)] == ids


@pytest.mark.django_db(transaction=True)
def test_a_sharded_start_is_written_unsharded(api, worker, settings, caplog) -> None:
    call_command("seed_shop", orders=60, seed=7, verbosity=0)
    use(settings, SHARD_ROWS=None, CHUNK_SIZE=7)
    expected = export_file(api, worker, "orderRow")
    use(settings, SHARD_ROWS=10, CHUNK_SIZE=7)
    service = site.get("orderRow")
    export = ReportExport(
        service="orderRow", slot="orderRow", format="xlsx", fields=list(service.fields)
    )
    writer = XLSXWriter("orderRow", service.fields)
    assert plan(export, service, service.get_queryset(), writer, total=60) == []
    with caplog.at_level(logging.INFO, logger="django_report_export"):
        assert export_file(api, worker, "orderRow") == expected
    assert not [record for record in caplog.records if " shard " in record.getMessage()]
    assert not ReportExportShard.objects.exists()
    sheet = read(expected).active
    assert sheet.max_row == Order.objects.count() + 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_is_continued_to_the_same_workbook(api, worker, settings, tmp_path) -> None:
    call_command("seed_shop", orders=1500, seed=11, verbosity=0)
    failure = {"CHUNK_SIZE": 2, "CHECKPOINT_INTERVAL": 0, "HEARTBEAT_INTERVAL": 0.2}
    failure["STALE_AFTER"] = 1.5
    use(settings, CHUNK_SIZE=2)  # the sheet's deflate pieces are chunks: the same size
    uninterrupted = export_file(api, worker, "orderRow")
    use(settings, **failure)  # the status read finds the heartbeat stale after STALE_AFTER

    def status() -> dict[str, Any]:
        return api.get("/api/report/orderRow/status").json()

    assert api.post("/api/report/orderRow/start?format=xlsx").status_code == 202
    with WorkerProcess(tmp_path / "worker-1.log", **failure) as first:
        wait_for(lambda: status()["processed"] >= 500)
        first.kill()
    assert status()["status"] == Status.RUNNING
    with WorkerProcess(tmp_path / "worker-2.log", **failure):
        wait_for(lambda: status()["status"] != Status.RUNNING or None, timeout=30)
        wait_for(lambda: status()["status"] == Status.FINISHED, timeout=120)
    assert ReportExport.objects.get(status=Status.FINISHED, retries=1).processed == 1500
    assert download(api, "orderRow") == uninterrupted


# --- LibreOffice -------------------------------------------------------------------------


def soffice_csv(workbook: Path, tmp_path: Path) -> list[list[str]]:
    """The workbook as LibreOffice Calc opens it, saved as UTF-8 CSV, parsed."""
    profile = tmp_path / "profile"
    started = time.monotonic()
    subprocess.run(
        [
            "soffice",
            f"-env:UserInstallation=file://{profile}",
            "--headless",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76,1",
            "--outdir",
            str(tmp_path),
            str(workbook),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"LibreOffice converted the workbook in {time.monotonic() - started:.1f} s")
    text = (tmp_path / f"{workbook.stem}.csv").read_text(encoding="utf-8")
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_libreoffice_opens_the_workbook_with_the_expected_cells(tmp_path) -> None:
    path = tmp_path / "orders.xlsx"
    path.write_bytes(workbook_bytes(typed_rows(3), chunk=2))
    assert soffice_csv(path, tmp_path) == [
        COLUMNS,
        [
            "0",
            'Tür <0> & "Co"\nline\ufffd =1+2',
            "0.5",
            "TRUE",
            "2024-05-01 10:30:15",
            "2024-01-01",
            "08:15:30",
            "  padded 0  ",
            "0",
        ],
        [
            "1",
            'Tür <1> & "Co"\nline\ufffd ',
            "1.5",
            "FALSE",
            "2024-05-02 10:30:15",
            "2024-01-02",
            "08:15:30",
            "",
            "0.125",
        ],
        [
            "2",
            'Tür <2> & "Co"\nline\ufffd ',
            "2.5",
            "TRUE",
            "2024-05-03 10:30:15",
            "2024-01-03",
            "08:15:30",
            "  padded 2  ",
            "0.25",
        ],
    ]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_libreoffice_opens_an_order_export(api, worker, tmp_path) -> None:
    call_command("seed_shop", orders=40, seed=5, verbosity=0)
    path = tmp_path / "orders.xlsx"
    path.write_bytes(export_file(api, worker, "orderRow"))
    header, *rows = soffice_csv(path, tmp_path)
    service = site.get("orderRow")
    assert header == list(service.fields)
    expected = list(service.get_queryset().order_by("pk").values_list("id", "number", "total"))
    assert len(rows) == len(expected)
    id_, number, total = (header.index(name) for name in ("id", "number", "total"))
    for row, (key, text, amount) in zip(rows, expected, strict=True):
        assert (int(row[id_]), row[number], Decimal(row[total])) == (key, text, amount)
