"""Parts on a local disk: a run appends to one part of its own, a checkpoint counts its bytes,
and the single part of an uninterrupted export becomes the published file without a copy.

Object storages (``tests/test_object_storage.py``) and storages that customise saving keep
the other way: a new part per checkpoint."""

from __future__ import annotations

import csv
import errno
import gzip
import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, InMemoryStorage

from django_report_export import control
from django_report_export.exceptions import ReportExportError
from django_report_export.models import ReportExport, Status
from django_report_export.storage import Part, export_folder, local_folder, publish
from testproject.shop.factories import ProductFactory

from .support.polling import while_running
from .test_shards import shard_runs

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 60


@pytest.fixture
def products(api: Any, settings: Any) -> None:
    ProductFactory.create_batch(ROWS)
    settings.REPORT_EXPORT = {
        **settings.REPORT_EXPORT,
        "CHUNK_SIZE": 2,
        "CHECKPOINT_INTERVAL": 0,  # a checkpoint after every chunk
    }


def download(api: Any) -> bytes:
    response = api.get("/api/report/product/download")
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def parts_on_disk(export_root: Path, export: ReportExport) -> list[Path]:
    return sorted((Path(export_root) / export_folder(export) / "parts").glob("*"))


def csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


def paused_export(api: Any, worker: Any, export_format: str, compression: str) -> ReportExport:
    query = f"format={export_format}&compression={compression}"
    assert api.post(f"/api/report/product/start?{query}").status_code == 202
    poller = while_running("product", 20, control.pause)
    worker()
    poller.join()
    assert poller.error is None
    export = ReportExport.objects.get(status=Status.PAUSED)
    assert 20 <= export.processed < ROWS
    return export


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("export_format", ["csv", "json"])  # the product service's formats
def test_checkpoints_count_the_bytes_of_one_part_and_resume_ignores_bytes_past_them(
    api, products, worker, export_root, export_format, compression
):
    api.post(f"/api/report/product/start?format={export_format}&compression={compression}")
    worker()
    uninterrupted = download(api)

    export = paused_export(api, worker, export_format, compression)
    # Twenty and more checkpoints, and still one part: the run appended to it.
    (part,) = parts_on_disk(export_root, export)
    assert export.checkpoint["parts"] == [str(part.relative_to(export_root))]
    assert export.checkpoint["sizes"] == [part.stat().st_size]
    # What a run that was lost writes after its last checkpoint: bytes no checkpoint counted.
    with part.open("ab") as lost_run:
        lost_run.write(b"<rows of a lost run>\n")

    assert api.post("/api/report/product/resume").status_code == 200
    worker()
    assert api.get("/api/report/product/status").json()["status"] == Status.FINISHED
    assert download(api) == uninterrupted
    assert parts_on_disk(export_root, ReportExport.objects.get(pk=export.pk)) == []


def test_uninterrupted_export_publishes_its_part_without_copying_it(
    api, products, worker, export_root, monkeypatch
):
    links: list[tuple[str, str]] = []
    real_link = os.link

    def recording_link(source: str, target: str) -> None:
        links.append((source, target))
        real_link(source, target)

    monkeypatch.setattr(os, "link", recording_link)
    api.post("/api/report/product/start?format=csv")
    worker()
    export = ReportExport.objects.get()
    assert export.status == Status.FINISHED
    published = Path(export_root) / export.file_name
    assert [Path(target) for _, target in links] == [published]
    assert "/parts/" in links[0][0]
    assert published.stat().st_nlink == 1  # the part's name is gone, the file stays
    assert len(csv_rows(published)) == ROWS + 1
    assert export.file_size == published.stat().st_size


def test_a_resumed_export_is_assembled_from_both_runs_parts(api, products, worker, export_root):
    export = paused_export(api, worker, "csv", "none")
    assert api.post("/api/report/product/resume").status_code == 200
    worker()
    export.refresh_from_db()
    assert export.status == Status.FINISHED
    rows = csv_rows(Path(export_root) / export.file_name)
    assert len(rows) == ROWS + 1
    assert len({row[0] for row in rows[1:]}) == ROWS


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("run", ["uninterrupted", "resumed", "sharded"])
def test_the_status_sha256_is_the_downloaded_files(
    api, products, worker, settings, caplog, run, compression
):
    # Uninterrupted, the run keeps the digest as it writes; resumed, its first part is
    # another run's; sharded, the shards' parts are joined: each publishes a file of its own.
    if run == "sharded":
        settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "SHARD_ROWS": 20}
    if run == "resumed":
        paused_export(api, worker, "csv", compression)
        assert api.post("/api/report/product/resume").status_code == 200
    else:
        api.post(f"/api/report/product/start?format=csv&compression={compression}")
    with caplog.at_level(logging.INFO, logger="django_report_export"):
        worker()
    body = api.get("/api/report/product/status").json()
    assert body["status"] == Status.FINISHED, body
    stored = download(api)
    assert body["sha256"] == sha256_of(stored)
    text = gzip.decompress(stored) if compression == "gzip" else stored
    assert len(csv_rows_of(text)) == ROWS + 1
    assert bool(shard_runs(caplog)) == (run == "sharded")


def csv_rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


# --- publish() of sized parts --------------------------------------------------------------


def local_storage(tmp_path: Path, **parts: bytes) -> FileSystemStorage:
    storage = FileSystemStorage(location=tmp_path)
    for name, content in parts.items():
        (tmp_path / name).write_bytes(content)
    return storage


def test_a_single_whole_part_is_linked(tmp_path):
    storage = local_storage(tmp_path, **{"a.part": b"id\n1\n2\n"})
    name, size, sha256 = publish(storage, [Part("a.part", 7)], "out.csv", "")
    assert (name, size) == ("out.csv", 7)
    assert (tmp_path / "out.csv").samefile(tmp_path / "a.part")
    assert sha256 == sha256_of(b"id\n1\n2\n")  # read from the file: no digest was given


def test_a_linked_part_takes_the_digest_its_writer_kept(tmp_path):
    storage = local_storage(tmp_path, **{"a.part": b"id\n1\n2\n"})
    kept = hashlib.sha256(b"id\n1\n2\n")
    # The file is not read again: its SHA-256 is the one kept as its bytes were written.
    (tmp_path / "a.part").write_bytes(b"id\n9\n9\n")
    name, size, sha256 = publish(storage, [Part("a.part", 7)], "out.csv", "", digest=kept)
    assert (name, size, sha256) == ("out.csv", 7, sha256_of(b"id\n1\n2\n"))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_part_longer_than_counted_is_copied_up_to_its_size(tmp_path):
    storage = local_storage(tmp_path, **{"a.part": b"id\n1\n2\nlost\n"})
    name, size, sha256 = publish(storage, [Part("a.part", 7)], "out.csv", "")
    assert (tmp_path / name).read_bytes() == b"id\n1\n2\n"
    assert size == 7
    assert sha256 == sha256_of(b"id\n1\n2\n")
    assert not (tmp_path / name).samefile(tmp_path / "a.part")


def test_sized_parts_are_cut_before_compressing(tmp_path):
    storage = local_storage(tmp_path, **{"a.part": b"id\n1\nxx", "b.part": b"2\n"})
    name, size, sha256 = publish(storage, [Part("a.part", 5), Part("b.part")], "out.csv.gz", "gzip")
    stored = (tmp_path / name).read_bytes()
    assert gzip.decompress(stored) == b"id\n1\n2\n"
    assert size == len(stored)
    assert sha256 == sha256_of(stored)  # of the compressed file, as stored


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_parts_and_bytes_are_concatenated_on_a_local_disk(tmp_path, monkeypatch, kernel_copy):
    if not kernel_copy:  # a file system (or a system) without copy_file_range

        def refuse(*args: Any) -> int:
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    storage = local_storage(tmp_path, **{"a.part": b"1\n2\nlost", "b.part": b"3\n"})
    pieces = [b"<h>", Part("a.part", 4), b",", Part("b.part"), b"<f>"]
    name, size, sha256 = publish(storage, pieces, "out.txt", "")
    assert (tmp_path / name).read_bytes() == b"<h>1\n2\n,3\n<f>"
    assert size == 13
    assert sha256 == sha256_of(b"<h>1\n2\n,3\n<f>")


def test_a_part_shorter_than_counted_fails_and_leaves_nothing(tmp_path):
    storage = local_storage(tmp_path, **{"a.part": b"id\n1\n", "b.part": b"2\n"})
    with pytest.raises(ReportExportError, match="3 bytes shorter"):
        publish(storage, [Part("a.part", 8), Part("b.part")], "out.csv", "")
    assert not (tmp_path / "out.csv").exists()


def test_sized_parts_in_a_storage_that_cannot_append():
    storage = InMemoryStorage()
    storage.save("a.part", ContentFile(b"id\n1\nlost"))
    name, size, sha256 = publish(storage, [Part("a.part", 5)], "out.csv", "")
    assert storage.open(name).read() == b"id\n1\n"
    assert size == 5
    assert sha256 == sha256_of(b"id\n1\n")


class PostProcessingStorage(FileSystemStorage):
    """A file system storage that does something of its own when it saves."""

    def _save(self, name: str, content: Any) -> str:
        return super()._save(name, content)


def test_only_a_plain_file_system_storage_is_written_in_place(tmp_path):
    assert local_folder(FileSystemStorage(location=tmp_path))
    assert not local_folder(PostProcessingStorage(location=tmp_path))
    assert not local_folder(InMemoryStorage())
