"""On SQLite the generic reader forks a process of its own that reads and encodes every other
chunk (``readers/sqlite_process.py``). The file is the same as when one process reads every
chunk: whether the process reads, is killed, finds rows gone, or is turned off; and a job on a
real worker writes the same file with it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from django_report_export.formats import get_writer_class
from django_report_export.readers import OrmChunkReader
from django_report_export.readers.base import Chunk
from django_report_export.readers.sqlite_process import ReadProcess
from testproject.shop.models import Order

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only"),
]

FIELDS = ["id", "number", "created_at", "status", "customer__email", "subtotal", "note"]
CHUNK = 7


@pytest.fixture
def orders() -> None:
    call_command("seed_shop", orders=120, customers=12, products=10, seed=5, verbosity=0)


@pytest.fixture
def readers_pids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file each chunk read in a process of the reader's own adds that process's id to."""
    pids = tmp_path / "pids"
    pids.touch()
    original = OrmChunkReader._read_in_process

    def read_in_process(self: OrmChunkReader, after: Any, limit: int) -> Any:
        with pids.open("a") as file:
            file.write(f"{os.getpid()}\n")
        return original(self, after, limit)

    monkeypatch.setattr(OrmChunkReader, "_read_in_process", read_in_process)
    return pids


def expected_file(export_format: str) -> bytes:
    writer = get_writer_class(export_format)("order", FIELDS)
    rows = list(Order.objects.order_by("pk").values_list(*FIELDS))
    return writer.header() + writer.encode_rows(rows, first=True) + writer.footer(empty=False)


def read_file(
    export_format: str, between: Callable[[OrmChunkReader, int], None] | None = None
) -> tuple[bytes, OrmChunkReader]:
    """The file as a run reads it (its first chunk shorter); ``between(reader, n)`` runs
    after the n-th chunk."""
    writer = get_writer_class(export_format)("order", FIELDS)
    reader = OrmChunkReader(Order.objects.order_by("pk"), FIELDS, writer)
    parts, processed, last_key = [writer.header()], 0, None
    try:
        while True:
            limit = 3 if processed == 0 else CHUNK
            chunk = reader.read(last_key, limit, first=processed == 0)
            parts.append(chunk.data)
            processed += chunk.count
            last_key = chunk.last_key if chunk.count else last_key
            if chunk.count < limit:
                break
            if between is not None:
                between(reader, len(parts) - 1)
    finally:
        reader.close()
    parts.append(writer.footer(empty=processed == 0))
    return b"".join(parts), reader


@pytest.mark.parametrize("export_format", ["csv", "json", "jsonl", "xml"])
def test_every_other_chunk_is_read_by_the_process(
    orders: None, readers_pids: Path, export_format: str
) -> None:
    data, _ = read_file(export_format)
    assert data == expected_file(export_format)
    pids = readers_pids.read_text().split()
    chunks = -(-(Order.objects.count() - 3) // CHUNK)
    assert os.getpid() not in set(map(int, pids))
    assert len(set(pids)) == 1, "one process for the reader"
    assert chunks // 2 - 1 <= len(pids) <= chunks // 2 + 1, (len(pids), chunks)


def test_it_is_forked_beside_other_threads_without_a_warning(
    orders: None, readers_pids: Path
) -> None:
    """Python 3.12 warns of forking a process with threads (the run's heartbeat is one); the
    suite makes the package's warnings errors."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        data, _ = read_file("json")
    finally:
        stop.set()
    assert data == expected_file("json")
    assert readers_pids.read_text()


def test_off_when_the_setting_says_so(orders: None, readers_pids: Path, settings: Any) -> None:
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "SQLITE_READ_PROCESS": False}
    data, _ = read_file("csv")
    assert data == expected_file("csv")
    assert readers_pids.read_text() == ""


def test_not_for_a_writer_of_the_projects_own(orders: None, readers_pids: Path) -> None:
    class Counting(get_writer_class("csv")):  # type: ignore[misc]
        name = "counting"

    writer = Counting("order", FIELDS)
    reader = OrmChunkReader(Order.objects.order_by("pk"), FIELDS, writer)
    try:
        key = None
        for _ in range(4):
            key = reader.read(key, CHUNK, first=False).last_key
    finally:
        reader.close()
    assert readers_pids.read_text() == ""


def test_a_killed_process_leaves_the_reading_here(orders: None, readers_pids: Path) -> None:
    def kill(reader: OrmChunkReader, chunks: int) -> None:
        process = reader._process
        if chunks == 4 and process is not None and process._pid is not None:
            os.kill(process._pid, signal.SIGKILL)

    data, _ = read_file("csv", kill)
    assert data == expected_file("csv")
    assert 1 <= len(readers_pids.read_text().split()) <= 3


def test_a_chunk_read_before_rows_went_is_read_again(orders: None, readers_pids: Path) -> None:
    """The process reads the chunk after the next: a row deleted from the next chunk's range
    moves where the chunk after it starts, and the process's chunk is dropped."""
    keys = list(Order.objects.order_by("pk").values_list("pk", flat=True))
    deleted = []

    def delete_from_the_next_chunk(reader: OrmChunkReader, chunks: int) -> None:
        if chunks in (2, 5):
            processed = 3 + (chunks - 1) * CHUNK
            key = keys[processed + len(deleted) + 2]
            Order.objects.filter(pk=key).delete()
            deleted.append(key)

    data, _ = read_file("json", delete_from_the_next_chunk)
    assert len(deleted) == 2
    assert data == expected_file("json")
    assert not Order.objects.filter(pk__in=deleted).exists()


def test_the_process_ends_with_the_reader(orders: None) -> None:
    pids = []

    def remember(reader: OrmChunkReader, chunks: int) -> None:
        if reader._process is not None and reader._process._pid is not None:
            pids.append(reader._process._pid)

    data, _ = read_file("xml", remember)
    assert data == expected_file("xml")
    assert pids
    assert len(set(pids)) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


def exited(pid: int) -> bool:
    """Whether the process is gone or a zombie no one reaped (it ran to its end)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def test_the_process_ends_when_the_work_horse_is_killed() -> None:
    """A work horse killed mid-export (``SIGKILL``: no ``close()``) leaves no process behind."""
    found, told = os.pipe()
    horse = os.fork()
    if horse == 0:  # pragma: no cover - the work horse
        process = ReadProcess(lambda after, limit: Chunk(b"x", 1, after), lambda: None)
        process.ask(1, 1)
        assert process.take() == Chunk(b"x", 1, 1)
        os.write(told, str(process._pid).encode())
        os.kill(os.getpid(), signal.SIGKILL)
    os.close(told)
    pid = int(os.read(found, 32))
    os.close(found)
    os.waitpid(horse, 0)
    deadline = time.monotonic() + 10
    while not exited(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert exited(pid)
