"""Primary keys that are not small integers, through every way an export stops and goes on.

The demo's inquiries are keyed by UUIDs; ``tests.support.keyed`` adds a slug key, a text key in a
collation whose order is not Python's, and 64-bit keys beyond 2**53. For each: the file holds
the rows in the database's key order, and a paused and resumed export, one continued after
its worker was lost, and a sharded one are byte-identical to an uninterrupted export, on the
generic path and on PostgreSQL's fast path. Killed ``rqworker`` processes on inquiries are in
``test_faults.py``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
from django.db import connection
from lxml import etree

from django_report_export import control
from django_report_export.admin.actions import ACTION_PREFIX
from django_report_export.columns import column_names
from django_report_export.connection import get_redis
from django_report_export.formats import get_writer_class
from django_report_export.keys import key_from_json, key_to_json
from django_report_export.maintenance import recover_lost_run
from django_report_export.models import ReportExport, Status
from django_report_export.query import export_queryset
from django_report_export.readers import OrmChunkReader, get_reader
from django_report_export.readers.postgres import PostgresChunkReader
from django_report_export.registry import ExportService, site
from django_report_export.status import StatusStore
from testproject.shop.factories import InquiryFactory
from testproject.shop.models import Inquiry

from .support.demo import flat_columns
from .support.keyed.exports import SERVICES
from .support.keyed.models import Counted, Named, Slugged
from .support.polling import once_written, while_running

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 60
#: A chunk per row, a checkpoint after each: every key is once the last one saved.
SMALL_CHUNKS = {"CHUNK_SIZE": 1, "CHECKPOINT_INTERVAL": 0, "SHARD_ROWS": None}
#: Each key type, the service exporting it, and the format it is exported in here.
KEYED = [("inquiry", "xml"), ("slugged", "csv"), ("named", "json"), ("counted", "xml")]
NAMES = [
    "apple",
    "Banana",
    "cherry",
    "Date",
    "éclair",
    "Eagle",
    "zeta",
    "Zulu",
    "Ångström",
    "Smith, John",
    "o'Brien",
    "MacDonald",
    "mcintosh",
    "Été",
    "etude",  # Not "ete": MariaDB's utf8mb4_unicode_ci holds it equal to "Été".
]
BEYOND_FLOATS = 2**53


def make_rows(service: str) -> None:
    if service == "inquiry":
        InquiryFactory.create_batch(ROWS)
    elif service == "slugged":
        words = ["Zebra", "apple", "ärger", "10", "9", "a_b", "A-b", "ZZ"]
        Slugged.objects.bulk_create(
            Slugged(slug=f"{words[n % len(words)]}-{n}", title=f"t{n}", rank=n) for n in range(ROWS)
        )
    elif service == "named":
        Named.objects.bulk_create(
            Named(name=f"{NAMES[n % len(NAMES)]} {n // len(NAMES)}", note=f"n{n}", rank=n)
            for n in range(ROWS)
        )
    else:
        top = 2**63 - 1
        keys = [BEYOND_FLOATS + 1 + n * 7919 for n in range(ROWS - 3)] + [top - 2, top - 1, top]
        Counted.objects.bulk_create(
            Counted(id=key, label=f"l{key}", rank=n) for n, key in enumerate(keys)
        )


@pytest.fixture
def keyed_services() -> Iterator[None]:
    for name, service_class in SERVICES.items():
        site.register(name, service_class)
    yield
    for name in SERVICES:
        site.unregister(name)


@pytest.fixture(params=KEYED, ids=[service for service, _ in KEYED])
def keyed(request: Any, keyed_services: None, settings: Any) -> tuple[ExportService, str]:
    name, export_format = request.param
    make_rows(name)
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **SMALL_CHUNKS}
    return site.get(name), export_format


def use(settings: Any, **values: Any) -> None:
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **values}


def status(api: Any, service: ExportService) -> dict[str, Any]:
    return api.get(f"/api/report/{service.name}/status").json()


def download(api: Any, service: ExportService) -> bytes:
    response = api.get(f"/api/report/{service.name}/download")
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def export_file(api: Any, worker: Any, service: ExportService, export_format: str) -> bytes:
    response = api.post(f"/api/report/{service.name}/start?format={export_format}")
    assert response.status_code == 202, response.content
    worker()
    assert status(api, service)["status"] == Status.FINISHED, status(api, service)
    return download(api, service)


def key_name(service: ExportService) -> str:
    pk = service.model._meta.pk
    assert pk is not None
    return pk.name


def exported_keys(data: bytes, export_format: str, service: ExportService) -> list[str]:
    """The key column of the file, as text, in the file's order."""
    name = key_name(service)
    if export_format == "json":
        return [str(record[name]) for record in json.loads(data)]
    if export_format == "csv":
        return [row[name] for row in csv.DictReader(io.StringIO(data.decode()))]
    return [record.findtext(name) for record in etree.fromstring(data)]


def database_order(service: ExportService) -> list[str]:
    return [str(key) for key in service.get_queryset().order_by("pk").values_list("pk", flat=True)]


def run_while(worker: Any, poller: Any) -> None:
    worker()
    poller.join()
    assert poller.error is None, poller.error


def lose_the_worker(service: ExportService) -> None:
    """What a status read does once the running export's heartbeat is stale: take the run
    from its worker and queue a continuation. The run still going finds itself superseded at
    its next chunk, as a worker that was only unreachable would; a burst worker then runs the
    continuation from the last checkpoint."""
    store = StatusStore(get_redis())
    assert recover_lost_run(store, service.name, store.read(service.name) or {})


# --- the JSON form of a key ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "key"),
    [
        (Inquiry, uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")),
        (Counted, BEYOND_FLOATS + 1),
        (Counted, 2**63 - 1),
        (Slugged, "ärger-10"),
        (Named, "Smith, John"),
    ],
)
def test_a_key_round_trips_through_a_checkpoint_in_the_database(model, key):
    export = ReportExport.objects.create(
        service="x", slot="x", format="json", checkpoint={"last_key": key_to_json(model, key)}
    )
    stored = ReportExport.objects.get(pk=export.pk).checkpoint["last_key"]
    assert key_from_json(model, stored) == key
    assert type(key_from_json(model, stored)) is type(key)
    assert json.loads(json.dumps(key_to_json(model, key))) == key_to_json(model, key)


def test_checkpoints_written_before_keys_had_a_json_form_are_read():
    assert key_from_json(Counted, BEYOND_FLOATS + 1) == BEYOND_FLOATS + 1
    assert key_from_json(Inquiry, "0f8fad5bd9cb469fa16570867728950e") == uuid.UUID(
        "0f8fad5b-d9cb-469f-a165-70867728950e"
    )


# --- whole exports -------------------------------------------------------------------------


def test_the_rows_come_in_the_database_order(api, worker, keyed):
    service, export_format = keyed
    keys = database_order(service)
    if service.name == "named":
        assert keys != sorted(keys), "the collation must order these keys unlike Python"
    data = export_file(api, worker, service, export_format)
    assert exported_keys(data, export_format, service) == keys
    assert ReportExport.objects.get().processed == ROWS


def test_pause_and_resume_is_byte_identical(api, worker, keyed, monkeypatch):
    service, export_format = keyed
    uninterrupted = export_file(api, worker, service, export_format)
    pausing = once_written(monkeypatch, service.name, 20, control.pause)
    api.post(f"/api/report/{service.name}/start?format={export_format}")
    run_while(worker, pausing)
    paused = ReportExport.objects.get(status=Status.PAUSED)
    assert paused.checkpoint["processed"] == 20
    last_key = paused.checkpoint["last_key"]
    assert str(last_key) == database_order(service)[paused.checkpoint["processed"] - 1]
    assert api.post(f"/api/report/{service.name}/resume").status_code == 200
    worker()
    assert status(api, service)["status"] == Status.FINISHED
    assert download(api, service) == uninterrupted


def test_a_lost_worker_is_continued_byte_identical(api, worker, keyed):
    service, export_format = keyed
    uninterrupted = export_file(api, worker, service, export_format)
    api.post(f"/api/report/{service.name}/start?format={export_format}")
    run_while(worker, while_running(service.name, 20, lose_the_worker))
    worker()  # the continuation, if it was queued after the burst had found the queue empty
    continued = ReportExport.objects.get(status=Status.FINISHED, retries=1)
    assert continued.processed == ROWS
    assert download(api, service) == uninterrupted


def test_a_sharded_export_is_byte_identical(api, worker, keyed, settings):
    service, export_format = keyed
    uninterrupted = export_file(api, worker, service, export_format)
    use(settings, SHARD_ROWS=ROWS // 3)
    assert export_file(api, worker, service, export_format) == uninterrupted
    sharded = ReportExport.objects.filter(status=Status.FINISHED).order_by("created_at").last()
    assert sharded is not None
    assert sharded.processed == ROWS


def test_a_paused_sharded_export_resumes_byte_identical(api, worker, keyed, settings):
    service, export_format = keyed
    uninterrupted = export_file(api, worker, service, export_format)
    use(settings, SHARD_ROWS=ROWS // 3)
    api.post(f"/api/report/{service.name}/start?format={export_format}")
    run_while(worker, while_running(service.name, 20, control.pause))
    paused = ReportExport.objects.get(status=Status.PAUSED)
    bounds = [(s.after_key, s.last_key) for s in paused.shard_set.order_by("index")]
    assert len(bounds) == 3
    keys = database_order(service)
    ends = [str(last) for _, last in bounds[:-1]]
    assert ends == [keys[ROWS // 3 - 1], keys[2 * ROWS // 3 - 1]]
    assert api.post(f"/api/report/{service.name}/resume").status_code == 200
    worker()
    assert download(api, service) == uninterrupted


def hidden_values(html: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="(\w+)"(?: value="([^"]*)")?', html)
    return {name: unescape(value) for name, value in found}


def test_the_admin_action_exports_the_selected_rows_by_their_keys(api, worker, keyed):
    """Through the admin's changelist action and its start form: text keys may hold commas
    (``Smith, John 0``)."""
    service, export_format = keyed
    opts = service.model._meta
    keys = list(service.get_queryset().order_by("pk").values_list("pk", flat=True))
    chosen = [*keys[5:15], *keys[-3:]]
    if service.name == "named":
        chosen.append("Smith, John 0")
    action = api.post(
        f"/admin/{opts.app_label}/{opts.model_name}/",
        {
            "action": f"{ACTION_PREFIX}{service.name}",
            "_selected_action": [str(key) for key in chosen],
            "index": 0,
        },
    )
    html = action.content.decode()
    assert f"{len(chosen)} selected rows will be exported" in html, html[:3000]
    form = {name: hidden_values(html)[name] for name in ("service", "selection", "keys", "next")}
    started = api.post(
        "/admin/django_report_export/reportexport/start/",
        {**form, "format": export_format, "columns": column_names(service)},
    )
    assert started.status_code == 302, started.content[:3000]
    worker()
    wanted = {str(key) for key in chosen}
    assert exported_keys(download(api, service), export_format, service) == [
        key for key in database_order(service) if key in wanted
    ]


# --- PostgreSQL's fast path ----------------------------------------------------------------


def read_all(reader: Any, chunk_size: int) -> bytes:
    data, last_key, processed = [], None, 0
    while True:
        chunk = reader.read(last_key, chunk_size, first=processed == 0)
        data.extend(chunk.pieces())
        processed += chunk.count
        last_key = chunk.last_key if chunk.count else last_key
        if chunk.count < chunk_size:
            reader.close()
            return b"".join(data)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the fast path is PostgreSQL's")
@pytest.mark.parametrize("export_format", ["csv", "json", "xml"])
def test_fast_path_takes_integer_and_uuid_keys_and_leaves_text_keys(keyed, export_format):
    service, _ = keyed
    names, fields = flat_columns(service)
    export = ReportExport(service=service.name, format=export_format, fields=names)
    queryset = export_queryset(service, export)
    writer = get_writer_class(export_format)(service.name, names)
    reader = get_reader(queryset, fields, writer)
    on_fast_path = service.name in ("inquiry", "counted")
    assert isinstance(reader, PostgresChunkReader if on_fast_path else OrmChunkReader)
    for chunk_size in (1, 7, ROWS):
        chosen = get_reader(queryset, fields, writer)
        generic = OrmChunkReader(queryset, fields, writer)
        assert read_all(chosen, chunk_size) == read_all(generic, chunk_size)
