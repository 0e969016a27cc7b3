"""The jsonl format: json's objects one a line, the same bytes after a pause and in shards
(docs/formats.md). Every demo service's jsonl export is compared with the database in
test_exports_roundtrip.py."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command

from django_report_export import control
from django_report_export.formats import JSONLinesWriter, JSONWriter
from django_report_export.formats.base import ChunkRows, FormatWriter
from django_report_export.models import Status
from django_report_export.registry import site
from django_report_export.runs.plan import chunk_separator

from .support.polling import while_running

COLUMNS = ["id", "total", "created", "note", "tags", "key", "paid"]
ROWS: list[tuple[Any, ...]] = [
    (1, Decimal("12.50"), dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC), None, {"a": [1]}, None, True),
    (2, Decimal("1E+3"), None, 'line\nbreak, "quoted" },{', [], uuid.UUID(int=1), False),
    (2**70, None, None, "\ud800 lone", {"x": "},\n{"}, None, None),
]


def encoded(writer: FormatWriter, rows: list[tuple[Any, ...]], chunk: int) -> bytes:
    pieces = [writer.header()]
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        pieces.append(writer.encode_chunk(ChunkRows(part, len(COLUMNS)), first=start == 0))
    pieces.append(writer.footer(empty=not rows))
    return b"".join(pieces)


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_one_object_a_line_the_same_objects_as_json(chunk) -> None:
    lines = encoded(JSONLinesWriter("order", COLUMNS), ROWS, chunk)
    array = encoded(JSONWriter("order", COLUMNS), ROWS, chunk)
    assert lines.endswith(b"\n")
    assert lines.count(b"\n") == len(ROWS)
    objects = [json.loads(line) for line in lines.decode().splitlines()]
    assert objects == json.loads(array)
    # Value for value the same bytes: json's lines without the brackets and commas.
    assert lines.splitlines() == [line.rstrip(b",") for line in array.splitlines()[1:-1]]


def test_an_export_without_rows_is_empty() -> None:
    assert encoded(JSONLinesWriter("order", COLUMNS), [], 5) == b""


def test_jsonl_shards_with_nothing_between_chunks() -> None:
    assert chunk_separator(JSONLinesWriter("order", COLUMNS)) == b""


# --- Through the API ---------------------------------------------------------------------


def export_file(api, worker, service: str) -> bytes:
    response = api.post(f"/api/report/{service}/start?format=jsonl")
    assert response.status_code == 202, response.content
    worker()
    assert api.get(f"/api/report/{service}/status").json()["status"] == Status.FINISHED
    return download(api, service)


def download(api, service: str) -> bytes:
    response = api.get(f"/api/report/{service}/download")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"].endswith('.jsonl"')
    return b"".join(response.streaming_content)


def use(settings, **values: Any) -> None:
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **values}


@pytest.mark.django_db(transaction=True)
def test_pause_resume_and_shards_give_the_same_file(api, worker, settings, caplog) -> None:
    call_command("seed_shop", orders=90, seed=3, verbosity=0)
    use(settings, SHARD_ROWS=None, CHUNK_SIZE=4, CHECKPOINT_INTERVAL=0)
    uninterrupted = export_file(api, worker, "orderRow")
    ids = list(site.get("orderRow").get_queryset().order_by("pk").values_list("pk", flat=True))
    assert [json.loads(line)["id"] for line in uninterrupted.splitlines()] == ids

    api.post("/api/report/orderRow/start?format=jsonl")
    poller = while_running("orderRow", 20, control.pause)
    worker()
    poller.join()
    assert poller.error is None
    assert api.get("/api/report/orderRow/status").json()["status"] == Status.PAUSED
    assert api.post("/api/report/orderRow/resume").status_code == 200
    worker()
    assert download(api, "orderRow") == uninterrupted

    use(settings, SHARD_ROWS=30, CHUNK_SIZE=7)
    with caplog.at_level(logging.INFO, logger="django_report_export"):
        assert export_file(api, worker, "orderRow") == uninterrupted
    assert any(" shard 2 " in record.getMessage() for record in caplog.records)
