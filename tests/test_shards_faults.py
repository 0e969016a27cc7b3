"""Faults around sharded exports and publishing, injected in this process: a storage
failing mid-publish, storages that rewind their content, leases racing a rebuild, Redis
losing the export's keys mid-export, a shard whose run fails."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import pytest
from django.core.files import File
from django.core.files.storage import FileSystemStorage, InMemoryStorage
from django.core.management import call_command

from django_report_export import storage as storage_module
from django_report_export.connection import get_redis
from django_report_export.formats import get_writer_class
from django_report_export.models import ReportExport, ReportExportShard, Status
from django_report_export.query import export_queryset
from django_report_export.registry import site
from django_report_export.runs.leases import ShardStore, shards_key
from django_report_export.runs.plan import plan
from django_report_export.runs.sharded import ShardRun
from django_report_export.status import now_ts, slot_key
from django_report_export.storage import Part, StreamedFile, publish

from .support.polling import while_running

pytestmark = pytest.mark.django_db(transaction=True)

ORDERS = 120
SHARDED = {"SHARD_ROWS": 40, "CHUNK_SIZE": 7, "CHECKPOINT_INTERVAL": 0}


@pytest.fixture
def shop(transactional_db: Any) -> None:
    call_command("seed_shop", orders=ORDERS, seed=7, verbosity=0)


def use(settings: Any, **values: Any) -> None:
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **values}


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- Publishing: nothing half-written stays behind -----------------------------------------


def test_failed_publish_leaves_no_partial_file(tmp_path):
    storage = FileSystemStorage(location=tmp_path)
    with pytest.raises(FileNotFoundError):
        publish(storage, [b"<header>", Part("exports/missing.part"), b"<footer>"], "out.xml", "")
    assert not storage.exists("out.xml"), storage.open("out.xml").read()


class FlakyReadStorage(FileSystemStorage):
    """A file system storage whose third read of a part times out, as object storage may."""

    parts_read: list[str] = []

    def _open(self, name: str, mode: str = "rb") -> Any:
        if name.endswith(".part"):
            self.parts_read.append(name)
            if len(self.parts_read) == 3:
                raise OSError("storage read timed out")
        return super()._open(name, mode)


@pytest.mark.parametrize("disk", ["local", "custom storage"])
def test_export_whose_publish_fails_leaves_no_orphan_file(
    api, worker, shop, settings, media_root, monkeypatch, disk
):
    use(settings, **SHARDED)
    parts_read: list[str] = []
    if disk == "local":
        real_copy = storage_module._copy_range

        def flaky_copy(source: Any, target: Any, size: int | None) -> int:
            parts_read.append(source.name)
            if len(parts_read) == 3:  # the disk fails mid-publish
                raise OSError("input/output error")
            return real_copy(source, target, size)

        monkeypatch.setattr(storage_module, "_copy_range", flaky_copy)
    else:
        FlakyReadStorage.parts_read = parts_read
        settings.STORAGES = {
            **settings.STORAGES,
            "flaky": {
                "BACKEND": "tests.test_shards_faults.FlakyReadStorage",
                "OPTIONS": {"location": str(media_root)},
            },
        }
        use(settings, STORAGE="flaky")
    api.post("/api/report/orderRow/start?format=xml")
    worker()
    export = ReportExport.objects.get()
    assert export.status == Status.ERROR
    assert len(parts_read) == 3
    # The shards' checkpoints and their parts stay, for a retry; a new start deletes them.
    kept = sorted(
        name for shard in export.shard_set.all() for name in shard.checkpoint.get("parts", [])
    )
    root = Path(storage_module.get_storage().location)  # type: ignore[attr-defined]
    assert kept
    assert files_under(root) == kept
    api.post("/api/report/orderRow/start?format=xml")
    assert files_under(root) == []


# --- Storages that rewind or size what they save ------------------------------------------


def test_publish_into_a_storage_that_sizes_its_content_first():
    class SizingStorage(InMemoryStorage):
        """What django-storages' GCS and Dropbox backends do: pass content.size along."""

        def _save(self, name: str, content: Any) -> str:
            self.announced = content.size
            return super()._save(name, content)

    storage = SizingStorage()
    name, size, sha256 = publish(storage, [b"abc", b"def"], "out.csv", "")
    assert storage.open(name).read() == b"abcdef"
    assert storage.announced == size == 6
    assert sha256 == hashlib.sha256(b"abcdef").hexdigest()


def test_a_stream_has_no_size_to_mistake():
    # Django's File.size would take a ``size`` attribute (the count so far) at its word.
    with pytest.raises(io.UnsupportedOperation):
        File(StreamedFile(iter([b"abc", b"def"])), name="x").size  # noqa: B018


def test_streamed_file_saves_into_a_storage_that_rewinds(tmp_path):
    class RewindingStorage(InMemoryStorage):
        """What django-storages' Azure and GCS backends do first: content.seek(0)."""

        def _save(self, name: str, content: Any) -> str:
            content.seek(0)
            return super()._save(name, content)

    storage = RewindingStorage()
    name, size, sha256 = publish(storage, [b"abc", b"def"], "out.csv", "")
    assert storage.open(name).read() == b"abcdef"
    assert size == 6
    assert sha256 == hashlib.sha256(b"abcdef").hexdigest()


# --- Leases: a shard is never held by two runs -------------------------------------------


def planned_export(api: Any) -> tuple[ReportExport, list[ReportExportShard]]:
    """A started XML export of the orders, planned into 3 shards, that no job has run."""
    api.post("/api/report/orderRow/start?format=xml")
    export = ReportExport.objects.get()
    service = site.get("orderRow")
    writer = get_writer_class("xml")("orderRow", export.fields)
    export.shards = 3
    shards = plan(export, service, export_queryset(service, export), writer, total=ORDERS)
    assert len(shards) == 3
    return export, shards


def test_rebuild_does_not_free_a_shard_claimed_but_not_yet_begun(api, shop):
    export, shards = planned_export(api)
    redis = get_redis()
    # The coordinator (a continuation) has just taken the slot to Running ...
    redis.hset(slot_key(export.slot), mapping={"status": int(Status.RUNNING), "request": ""})
    store = ShardStore(redis, export)
    store.rebuild(shards, now_ts())
    # ... an old helper, its shard done, claims the next pending one (shard 0) ...
    assert store.claim("a" * 32, 3, now_ts()) == 0
    # ... before it wrote its token to the database, the coordinator's execute() rebuilds:
    store.rebuild(list(export.shard_set.order_by("index")), now_ts())
    second = store.claim("b" * 32, 3, now_ts())
    assert second != 0, "shard 0 leased to two runs at once"


def test_shard_begin_does_not_steal_a_running_shard(api, shop):
    export, shards = planned_export(api)
    store = ShardStore(get_redis(), export)
    first = ShardRun(export, shards[0], store, "a" * 32)
    second = ShardRun(export, shards[0], store, "b" * 32)
    assert first.begin()
    assert not second.begin(), "a second run took over shard 0 while the first holds it"


# --- Redis losing the export's keys mid-export is not a lost worker ----------------------


def lose_redis_keys(service: Any) -> None:
    export = ReportExport.objects.get(status=Status.RUNNING)
    get_redis().delete(slot_key(export.slot), shards_key(export.pk))


@pytest.mark.parametrize("max_retries", [3, 0])
def test_redis_losing_keys_mid_export_is_not_a_lost_worker(
    api, worker, shop, settings, caplog, max_retries
):
    use(
        settings,
        **SHARDED,
        STALE_AFTER=1,
        HEARTBEAT_INTERVAL=0.2,
        MAX_RETRIES=max_retries,
    )
    api.post("/api/report/orderRow/start?format=json")
    poller = while_running("orderRow", 20, lose_redis_keys)
    with caplog.at_level(logging.INFO, logger="django_report_export"):
        worker()
    poller.join()
    assert poller.error is None, poller.error
    export = ReportExport.objects.get()
    lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert export.status == Status.FINISHED, (export.error, lost)
    assert export.processed == ORDERS
    assert not lost, lost


# --- An export that ends in Error forgets its shards -------------------------------------


def test_failed_sharded_export_keeps_its_shards_until_a_new_start(
    api, worker, shop, settings, monkeypatch
):
    use(settings, **SHARDED)
    real = ShardRun.export_rows

    def failing(self: ShardRun) -> str:
        if self.shard.index == 1:
            raise RuntimeError("boom")
        return real(self)

    monkeypatch.setattr(ShardRun, "export_rows", failing)
    api.post("/api/report/orderRow/start?format=xml")
    worker()
    export = ReportExport.objects.get()
    assert export.status == Status.ERROR
    # A retry continues the shards from their checkpoints; no run holds a lease any more.
    shards = list(ReportExportShard.objects.filter(export=export))
    assert shards
    assert all(shard.run_token == "" for shard in shards)
    assert not get_redis().exists(shards_key(export.pk))
    api.post("/api/report/orderRow/start?format=xml")
    assert not ReportExportShard.objects.filter(export=export).exists()
