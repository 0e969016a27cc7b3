"""One benchmark method, run in a process of its own: ``python -m bench.methods NAME OUT``.

Every method exports ``orderRow``, the demo shop's orders as flat rows (``bench/exports.py``:
15 fields, two of them through the customer relation, in primary-key order; ``BENCH_SERVICE``
names another service) to
the file ``OUT`` and prints one JSON line: ``{"seconds": <time of the work itself>, ...}``.
The database, Redis and media folder come from ``DATABASE_URL``, ``REDIS_URL`` and
``MEDIA_ROOT`` (``bench.settings``, the demo's). The runner (``bench/run.py``) measures each
process's wall time and peak memory around it.

Methods:

* ``job-csv``, ``job-json``, ``job-xml``: the project's export job end to end. An export is
  started through ``control.start`` (as the API does) and run by a forking RQ worker in burst
  mode; its work horse reports the job's time, from taking the job to the file published, the
  time of the reader's ``read`` calls within it (``bench.worker.ReaderClock``), and its own
  peak RSS. ``REPORT_EXPORT_SETTINGS='{"FAST_PATH": false}'`` selects the generic path;
  ``BENCH_IN_PROCESS=1`` runs the job in the worker's own process instead of a work horse.
* ``shards-csv``, ...: the same job with ``BENCH_WORKERS`` (2) forking workers side by side
  and the export split into as many shards; its time runs from the start to the file
  published.
* ``cli-csv``, ...: run by the runner, not here: ``manage.py report_export start SERVICE
  --format F --wait`` against a running ``manage.py rqworker`` (``bench.worker.MeasuringWorker``),
  the whole process timed from outside; ``reset`` before it cleans the slot and Redis, ``fetch``
  after it moves the file to ``OUT`` and prints the rows and the time from the start to the
  first rows read.
* ``loop-csv``, ...: the same reader and writer loop without the job's machinery (no Redis
  progress, no pause/cancel checks, no checkpoints, no parts, no publishing), with the time
  of its ``read`` calls measured the same way.
* ``copy-psycopg``: ``COPY (<the service's SQL>) TO STDOUT (FORMAT csv)`` through Django's
  connection (psycopg 3 ``cursor.copy()``); raw column values, as PostgreSQL writes them.
* ``copy-documents-jsonl``: for a document service (``BENCH_SERVICE``, with ``Nested``
  objects and ``Collection``s), ``COPY (SELECT json_build_object(..., 'lines', (SELECT
  json_agg(json_build_object(...) ORDER BY ...) FROM ... WHERE order_id = o.id))) TO STDOUT``
  through Django's connection: the same documents, one a line, built by PostgreSQL's own JSON
  functions in one process with a correlated subquery per collection (its own spacing and
  raw values, not the export's bytes): the anchor of the documents' fast path.
* ``drf-nested-json``: the demo's ``order`` documents through DRF's nested
  ``ModelSerializer``s over ``prefetch_related``, what a Django developer writes by hand (the
  anchor of the documents' generic path; ``drf_nested_json``).
* ``naive-values-list-csv``: ``values_list().iterator(5000)`` and ``csv.writer``.
* ``naive-models-csv``: model instances (``select_related``) and ``csv.writer``.
* ``naive-values-json``: ``values().iterator(5000)`` and ``orjson.dumps`` per row.
* ``naive-values-xml``: ``values().iterator(5000)`` and lxml's ``xmlfile``, one element per row.
* ``naive-xlsxwriter-xlsx``: ``values_list().iterator(5000)`` into xlsxwriter's
  ``constant_memory`` workbook, a bold header, dates with a number format.
* ``naive-openpyxl-xlsx``: the same loop into openpyxl's ``write_only`` workbook.
* ``import-export-csv``, ``import-export-xlsx``: django-import-export's
  ``ModelResource.export()`` and tablib's CSV or xlsx (openpyxl).
* ``sql``: prints the service's SQL (for ``psql``/``sqlite3``/``mariadb`` run by the runner).
* ``session``: prints a session key of a user allowed to read the service (load test).
* ``profile``: the generic reader and writer loop under cProfile; prints the top functions.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from operator import attrgetter
from pathlib import Path
from typing import Any

SERVICE = os.environ.get("BENCH_SERVICE", "orderRow")
CHUNK_SIZE = 5000
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()


def service_rows() -> tuple[Any, list[str], list[Any]]:
    """The service's queryset, as the export job builds it, its column names, and what
    ``values_list`` selects for each (a field path or an expression; a flat service only)."""
    from django_report_export.columns import Column, columns_of
    from django_report_export.registry import site

    service = site.get(SERVICE)
    columns = [entry for entry in columns_of(service) if isinstance(entry, Column)]
    selected = [column.select_item(service.model) for column in columns]
    return service.get_queryset().order_by("pk"), [c.name for c in columns], selected


def service_names() -> list[str]:
    """The names of the service's columns, as an export of all of them records them."""
    from django_report_export.columns import column_names
    from django_report_export.registry import site

    return column_names(site.get(SERVICE))


def service_shape() -> dict[str, Any]:
    """What the runner needs to know of the service: its formats, and whether it writes
    documents (then the name and XML item element of its first collection, whose items the
    runner counts)."""
    from django_report_export.columns import Collection, columns_of, is_document
    from django_report_export.registry import site

    service = site.get(SERVICE)
    collection = next((e for e in columns_of(service) if isinstance(e, Collection)), None)
    return {
        "formats": list(service.formats),
        "document": is_document(service),
        "collection": collection.name if collection else "",
        "item": collection.item if collection else "",
    }


def service_sql(inline: bool = True) -> str:
    """The SQL of ``values_list(*fields)`` of the service, parameters inlined."""
    from django.db import connection

    queryset, _, selected = service_rows()
    sql, params = queryset.values_list(*selected).query.get_compiler(using=queryset.db).as_sql()
    if params and inline:
        if connection.vendor not in ("postgresql", "mysql"):
            raise NotImplementedError("Only PostgreSQL and MariaDB/MySQL inline parameters here.")
        with connection.cursor() as cursor:
            return str(cursor.cursor.mogrify(sql, params))
    return str(sql)


# --- The project's export -------------------------------------------------------------------


def job(out: Path, export_format: str) -> dict[str, Any]:
    """Start an export as the API does and run it with RQ workers: one in burst mode (forking,
    or with ``BENCH_IN_PROCESS=1`` running the job itself), or ``BENCH_WORKERS`` forking ones
    side by side with the export split into as many shards."""
    import django_rq
    from django.db import connections

    from bench.worker import RESULT_ENV, InProcessMeasuringWorker, MeasuringWorker
    from django_report_export import control
    from django_report_export.conf import export_settings
    from django_report_export.connection import get_redis
    from django_report_export.models import ReportExport, Status
    from django_report_export.registry import site
    from django_report_export.storage import get_storage

    service = site.get(SERVICE)
    workers = int(os.environ.get("BENCH_WORKERS", "1"))
    # A clean slot: nothing left running by an interrupted earlier run.
    ReportExport.objects.filter(service=SERVICE, status__in=Status.active()).update(
        status=Status.CANCELED
    )
    get_redis().flushdb()
    horse_result = out.with_suffix(".horse.json")
    horse_result.unlink(missing_ok=True)
    os.environ[RESULT_ENV] = str(horse_result)
    request = control.ExportRequest(format=export_format, fields=service_names(), shards=workers)
    started = time.perf_counter()
    status = control.start(service, request)
    # As `manage.py rqworker` does before it starts: no worker or work horse may inherit this
    # process's database connections (SQLite's file locks and a psycopg socket are not safe
    # to share across fork(); on SQLite the job ran slower in a horse that had one).
    connections.close_all()
    if workers == 1:
        in_process = os.environ.get("BENCH_IN_PROCESS") == "1"
        worker_class = InProcessMeasuringWorker if in_process else MeasuringWorker
        worker = django_rq.get_worker(export_settings.QUEUE, worker_class=worker_class)
        worker.work(burst=True, logging_level="WARNING")
    else:
        run_workers(workers, status["id"])
    seconds = time.perf_counter() - started
    export = ReportExport.objects.get(pk=status["id"])
    if export.status != Status.FINISHED:
        raise RuntimeError(f"The export ended {export.get_status_display()}: {export.error}")
    storage = get_storage()
    Path(storage.path(export.file_name)).replace(out)
    storage.delete(export.file_name)
    horses = [json.loads(line) for line in horse_result.read_text().splitlines()]
    horse_result.unlink()
    return {
        # One worker: the job itself; several: from the start to the file published.
        "seconds": horses[0]["job_seconds"] if workers == 1 else seconds,
        "read_seconds": sum(horse["read_seconds"] for horse in horses),
        "write_seconds": sum(horse["write_seconds"] for horse in horses),
        "finish_seconds": sum(horse["finish_seconds"] for horse in horses),
        "start_to_end_seconds": seconds,
        "horse_rss_kib": max(horse["horse_rss_kib"] for horse in horses),
        "children_rss_kib": max(horse.get("children_rss_kib", 0) for horse in horses),
        "horse_rss_at_start_kib": horses[0]["horse_rss_at_start_kib"],
        "jobs": len(horses),
        "rows": export.processed,
        "fast_path": bool(export_settings.FAST_PATH),
    }


def reset() -> dict[str, Any]:
    """A clean slot and an empty Redis database, before a ``cli-*`` run starts its worker."""
    from django_report_export.connection import get_redis
    from django_report_export.models import ReportExport, Status

    ReportExport.objects.filter(service=SERVICE, status__in=Status.active()).update(
        status=Status.CANCELED
    )
    get_redis().flushdb()
    return {}


def fetch(out: Path) -> dict[str, Any]:
    """After a ``cli-*`` run: the service's last export's file moved to ``out``, its rows, and
    the time from its start (the export's ``created_at``, before it was queued) to the first
    rows its work horse read (``BENCH_HORSE_RESULT``)."""
    from bench.worker import RESULT_ENV
    from django_report_export.models import ReportExport, Status
    from django_report_export.storage import get_storage

    export = ReportExport.objects.filter(service=SERVICE).order_by("-created_at").first()
    if export is None or export.status != Status.FINISHED:
        state = export.get_status_display() if export else "missing"
        raise RuntimeError(f"The export ended {state}: {export.error if export else ''}")
    storage = get_storage()
    Path(storage.path(export.file_name)).replace(out)
    storage.delete(export.file_name)
    horse_result = Path(os.environ[RESULT_ENV])
    horses = [json.loads(line) for line in horse_result.read_text().splitlines()]
    horse_result.unlink()
    return {
        "rows": export.processed,
        "first_row_seconds": horses[0]["first_read_at"] - export.created_at.timestamp(),
        "horse_rss_kib": max(horse["horse_rss_kib"] for horse in horses),
        "children_rss_kib": max(horse.get("children_rss_kib", 0) for horse in horses),
        "jobs": len(horses),
        "reader": export.reader,
        # Where the whole process's time goes: in the work horses, and in their readers.
        "job_seconds": sum(horse["job_seconds"] for horse in horses),
        "read_seconds": sum(horse["read_seconds"] for horse in horses),
        "write_seconds": sum(horse["write_seconds"] for horse in horses),
        "finish_seconds": sum(horse["finish_seconds"] for horse in horses),
        "queued_to_finished_seconds": (export.finished_at - export.created_at).total_seconds(),
    }


def run_workers(count: int, export_id: Any) -> None:
    """Fork ``count`` RQ workers (this process holds no database connection) and stop them
    once the export has ended."""
    import signal

    import django_rq

    from bench.worker import MeasuringWorker
    from django_report_export.conf import export_settings
    from django_report_export.models import ReportExport, Status

    children = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the worker process
            code = 0
            try:
                worker = django_rq.get_worker(export_settings.QUEUE, worker_class=MeasuringWorker)
                worker.work(logging_level="WARNING")
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    try:
        active = ReportExport.objects.filter(pk=export_id, status__in=Status.active())
        while active.exists():
            time.sleep(0.02)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)


def loop(out: Path, export_format: str) -> dict[str, Any]:
    """The job's reader and writer loop alone, straight into the file."""
    from bench.worker import ReaderClock
    from django_report_export.conf import export_settings
    from django_report_export.documents import reader_for, written_columns
    from django_report_export.formats import get_writer_class
    from django_report_export.registry import site

    service, names = site.get(SERVICE), service_names()
    queryset = service.get_queryset().order_by("pk")
    started = time.perf_counter()
    columns = written_columns(service, names, export_format)
    writer = get_writer_class(export_format)(SERVICE, columns)
    reader = reader_for(service, names, queryset, writer)
    chunk_size = export_settings.CHUNK_SIZE
    processed, last_key = 0, None
    with ReaderClock().running() as reader_clock, out.open("wb") as file:
        file.write(writer.header())
        while True:
            chunk = reader.read(last_key, chunk_size, first=processed == 0)
            if chunk.count:
                file.writelines(chunk.pieces())
                processed += chunk.count
                last_key = chunk.last_key
            if chunk.count < chunk_size:
                break
        file.write(writer.footer(empty=processed == 0))
    reader.close()
    return {
        "seconds": time.perf_counter() - started,
        "read_seconds": reader_clock.seconds,
        "rows": processed,
        "reader": type(reader).__name__,
    }


# --- Baselines ------------------------------------------------------------------------------


def copy_to(sql: str, out: Path) -> dict[str, Any]:
    """Run the ``COPY ... TO STDOUT`` ``sql`` into ``out``: its seconds and rows."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor, out.open("wb") as file:
        with cursor.cursor.copy(sql) as copy:
            for block in copy:
                file.write(block)
        rows = cursor.cursor.rowcount
    return {"seconds": time.perf_counter() - started, "rows": rows}


def copy_psycopg(out: Path) -> dict[str, Any]:
    return copy_to(f"COPY ({service_sql()}) TO STDOUT WITH (FORMAT csv)", out)


def documents_sql() -> str:
    """The ``SELECT`` of the service's documents as ``json_build_object`` values, parameters
    inlined (PostgreSQL)."""
    from django.conf import settings
    from django.db import connection

    from django_report_export.documents import reader_for
    from django_report_export.formats import get_writer_class
    from django_report_export.readers.documents import Many, Object
    from django_report_export.registry import site

    service = site.get(SERVICE)
    names = [entry if isinstance(entry, str) else entry.name for entry in service.fields]
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "FAST_PATH": False}
    queryset = service.get_queryset().order_by("pk")
    reader: Any = reader_for(service, names, queryset, get_writer_class("json")(SERVICE, names))
    if not hasattr(reader, "members"):
        raise SystemExit(f"{SERVICE} is not a document service")

    def inline(values: Any) -> str:
        sql, params = values.query.get_compiler(using=values.db).as_sql()
        with connection.cursor() as cursor:
            return str(cursor.cursor.mogrify(sql, params)) if params else str(sql)

    def built(members: Any, column: Callable[[int], str]) -> str:
        pairs = []
        for member in members:
            if isinstance(member, Object):
                inner = built(member.members, column)
                value = f"CASE WHEN {column(member.present)} IS NULL THEN NULL ELSE {inner} END"
            elif isinstance(member, Many):
                value = items(member)
            else:
                value = column(member.position)
            pairs += [f"'{member.name}'", value]
        return f"json_build_object({', '.join(pairs)})"

    def items(many: Any) -> str:
        order = [entry for entry in many.queryset.query.order_by[1:] if isinstance(entry, str)]
        paths = [entry.removeprefix("-") for entry in order]
        rows = inline(many.queryset.order_by().values_list(many.link, *paths, *many.items))
        names = ["k", *(f"o{i}" for i in range(len(paths)))]
        names += [f"c{i}" for i in range(len(many.items))]
        ordering = ", ".join(
            f"s.o{i}{' DESC' if entry.startswith('-') else ''}" for i, entry in enumerate(order)
        )
        item = built(many.members, "s.c{}".format)
        return (
            f"COALESCE((SELECT json_agg({item} ORDER BY {ordering}) FROM ({rows}) "
            f"s({', '.join(names)}) WHERE s.k = t.c0), '[]'::json)"
        )

    main = inline(queryset.values_list("pk", *reader.fields))
    columns = ", ".join(f"c{i}" for i in range(len(reader.fields) + 1))
    document = built(reader.members, lambda position: f"t.c{position + 1}")
    return f"SELECT {document} FROM ({main}) t({columns}) ORDER BY t.c0"


def copy_documents_jsonl(out: Path) -> dict[str, Any]:
    return copy_to(f"COPY ({documents_sql()}) TO STDOUT", out)


def drf_nested_json(out: Path) -> dict[str, Any]:
    """The demo's order documents as a Django developer writes them by hand with DRF: a
    ``ModelSerializer`` with nested serializers for the two addresses and nested ``many=True``
    ones for the lines and payments, over ``select_related``/``prefetch_related`` read with
    ``.iterator(chunk_size=...)`` (which prefetches chunk by chunk since Django 4.1), into one
    JSON array, a document a line. Labels come from ``get_<field>_display``, ``net`` from an
    annotation (the service's own expression, so its decimals are the database's).

    One serializer instance renders every order (``to_representation``, as a ``ListSerializer``
    does for each item), and orjson writes each document: DRF's ``JSONRenderer`` is
    ``json.dumps`` with its encoder, about four times slower on these documents, and the
    anchor is meant to measure the serializers, not a renderer."""
    import orjson
    from django.db.models import Prefetch
    from rest_framework import serializers

    from testproject.shop.models import Address, Order, OrderLine, Transaction
    from testproject.shop.report_exports import NET

    class AddressSerializer(serializers.ModelSerializer[Address]):
        class Meta:
            model = Address
            fields = ("name", "company", "street", "postal_code", "city", "country")

    class LineSerializer(serializers.ModelSerializer[OrderLine]):
        class Meta:
            model = OrderLine
            fields = ("sku", "title", "quantity", "unit_price", "tax_rate", "line_total")

    class PaymentSerializer(serializers.ModelSerializer[Transaction]):
        kind = serializers.CharField(source="get_kind_display")
        provider = serializers.CharField(source="get_provider_display")
        status = serializers.CharField(source="get_status_display")

        class Meta:
            model = Transaction
            fields = ("reference", "kind", "provider", "amount", "currency", "status")
            fields += ("created_at",)

    class OrderSerializer(serializers.ModelSerializer[Order]):
        status = serializers.CharField(source="get_status_display")
        customer_email = serializers.EmailField(source="customer.email")
        customer_first_name = serializers.CharField(source="customer.first_name")
        customer_last_name = serializers.CharField(source="customer.last_name")
        net = serializers.DecimalField(max_digits=13, decimal_places=2)
        payment_method = serializers.CharField(source="get_payment_method_display")
        billing_address = AddressSerializer(allow_null=True)
        shipping_address = AddressSerializer(allow_null=True)
        lines = LineSerializer(many=True)
        payments = PaymentSerializer(source="transactions", many=True)

        class Meta:
            model = Order
            fields = tuple(service_names())  # the export's own names, in its order

    orders = (
        Order.objects.annotate(net=NET)
        .select_related("customer", "billing_address", "shipping_address")
        .prefetch_related(
            Prefetch("lines", queryset=OrderLine.objects.order_by("pk")),
            Prefetch("transactions", queryset=Transaction.objects.order_by("created_at", "pk")),
        )
        .order_by("pk")
    )
    serializer = OrderSerializer()
    started = time.perf_counter()
    rows = 0
    with out.open("wb") as file:
        file.write(b"[\n")
        for order in orders.iterator(chunk_size=CHUNK_SIZE):
            if rows:
                file.write(b",\n")
            file.write(orjson.dumps(serializer.to_representation(order)))
            rows += 1
        file.write(b"\n]\n")
    return {"seconds": time.perf_counter() - started, "rows": rows}


def named_values(queryset: Any, names: list[str], selected: list[Any]) -> Iterator[dict[str, Any]]:
    """``values()`` under the columns' names: one dict a row, built as ``values()`` builds it
    (its keyword form cannot name a column after a model field, as ``Column("product",
    "product__name")`` does)."""
    for row in queryset.values_list(*selected).iterator(chunk_size=CHUNK_SIZE):
        yield dict(zip(names, row, strict=True))


def attribute_paths(queryset: Any, selected: list[Any]) -> tuple[Any, list[str]]:
    """The queryset and a path of model attributes for each column: a field path as it is,
    an expression annotated on the instances."""
    paths = [
        item if isinstance(item, str) else f"bench_column_{i}" for i, item in enumerate(selected)
    ]
    expressions = {path: item for path, item in zip(paths, selected, strict=True) if path != item}
    return queryset.annotate(**expressions), paths


def naive_values_list_csv(out: Path) -> dict[str, Any]:
    queryset, names, selected = service_rows()
    started = time.perf_counter()
    rows = 0
    with out.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(names)
        for row in queryset.values_list(*selected).iterator(chunk_size=CHUNK_SIZE):
            writer.writerow(row)
            rows += 1
    return {"seconds": time.perf_counter() - started, "rows": rows}


def naive_models_csv(out: Path) -> dict[str, Any]:
    queryset, names, selected = service_rows()
    queryset, paths = attribute_paths(queryset, selected)
    relations = sorted({path.rsplit("__", 1)[0] for path in paths if "__" in path})
    getters: list[Callable[[Any], Any]] = [attrgetter(path.replace("__", ".")) for path in paths]
    started = time.perf_counter()
    rows = 0
    with out.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(names)
        for obj in queryset.select_related(*relations).iterator(chunk_size=CHUNK_SIZE):
            writer.writerow([get(obj) for get in getters])
            rows += 1
    return {"seconds": time.perf_counter() - started, "rows": rows}


def naive_values_json(out: Path) -> dict[str, Any]:
    import orjson

    queryset, names, selected = service_rows()
    started = time.perf_counter()
    rows = 0
    with out.open("wb") as file:
        file.write(b"[\n")
        for row in named_values(queryset, names, selected):
            if rows:
                file.write(b",\n")
            file.write(orjson.dumps(row, default=str))
            rows += 1
        file.write(b"\n]\n")
    return {"seconds": time.perf_counter() - started, "rows": rows}


def naive_values_xml(out: Path) -> dict[str, Any]:
    from lxml import etree

    queryset, names, selected = service_rows()
    started = time.perf_counter()
    rows = 0
    with etree.xmlfile(str(out), encoding="utf-8") as xml:
        xml.write_declaration()
        with xml.element(f"{SERVICE}List"):
            for row in named_values(queryset, names, selected):
                record = etree.Element(SERVICE)
                for name, value in row.items():
                    if value is not None:
                        text = value if isinstance(value, str) else str(value)
                        etree.SubElement(record, name).text = XML_FORBIDDEN.sub("\ufffd", text)
                xml.write(record)
                xml.write("\n")
                rows += 1
    return {"seconds": time.perf_counter() - started, "rows": rows}


def _excel_value(value: Any, clean: Callable[[str, str], str] | None = None) -> Any:
    """What a hand-written loop does for Excel, which has no time zones and no decimals;
    ``clean(replacement, text)`` drops what the library refuses in a text."""
    import datetime
    import decimal

    if clean is not None and isinstance(value, str):
        return clean("", value)
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def naive_xlsxwriter(out: Path) -> dict[str, Any]:
    import datetime

    import xlsxwriter

    queryset, names, selected = service_rows()
    started = time.perf_counter()
    rows = 0
    workbook = xlsxwriter.Workbook(str(out), {"constant_memory": True})
    sheet = workbook.add_worksheet(SERVICE)
    bold = workbook.add_format({"bold": True})
    dates = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    sheet.write_row(0, 0, names, bold)
    sheet.freeze_panes(1, 0)
    for rows, row in enumerate(queryset.values_list(*selected).iterator(CHUNK_SIZE), start=1):
        for column, value in enumerate(map(_excel_value, row)):
            if isinstance(value, datetime.datetime):
                sheet.write_datetime(rows, column, value, dates)
            else:
                sheet.write(rows, column, value)
    workbook.close()
    return {"seconds": time.perf_counter() - started, "rows": rows}


def naive_openpyxl(out: Path) -> dict[str, Any]:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font

    queryset, names, selected = service_rows()
    started = time.perf_counter()
    rows = 0
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(SERVICE)
    sheet.freeze_panes = "A2"
    header = []
    for name in names:
        cell = WriteOnlyCell(sheet, value=name)
        cell.font = Font(bold=True)
        header.append(cell)
    sheet.append(header)
    for row in queryset.values_list(*selected).iterator(CHUNK_SIZE):
        # openpyxl refuses control characters (IllegalCharacterError): drop them.
        sheet.append([_excel_value(value, clean=ILLEGAL_CHARACTERS_RE.sub) for value in row])
        rows += 1
    workbook.save(str(out))
    return {"seconds": time.perf_counter() - started, "rows": rows}


def _import_export(out: Path, export_format: str) -> dict[str, Any]:
    from import_export import resources
    from import_export.fields import Field

    queryset, names, selected = service_rows()
    queryset, paths = attribute_paths(queryset, selected)

    class Meta:
        model = queryset.model
        fields = tuple(names)
        export_order = tuple(names)

    # A column named otherwise than its path is declared, as django-import-export's users do.
    declared = {
        name: Field(attribute=path, column_name=name)
        for name, path in zip(names, paths, strict=True)
        if name != path
    }
    resource_type = type(resources.ModelResource)
    ColumnsResource = resource_type(
        "ColumnsResource", (resources.ModelResource,), {**declared, "Meta": Meta}
    )

    started = time.perf_counter()
    dataset = ColumnsResource().export(queryset=queryset)
    if export_format == "xlsx":
        import tablib
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        # openpyxl refuses control characters (IllegalCharacterError): drop them, as in the
        # openpyxl loop.
        rows = [
            [_excel_value(value, ILLEGAL_CHARACTERS_RE.sub) for value in row] for row in dataset
        ]
        dataset = tablib.Dataset(*rows, headers=dataset.headers)
        out.write_bytes(dataset.export("xlsx"))
    else:
        with out.open("w", newline="", encoding="utf-8") as file:
            file.write(dataset.csv)
    return {"seconds": time.perf_counter() - started, "rows": len(dataset)}


def import_export_csv(out: Path) -> dict[str, Any]:
    return _import_export(out, "csv")


def import_export_xlsx(out: Path) -> dict[str, Any]:
    return _import_export(out, "xlsx")


def profile(out: Path, export_format: str, rows: int) -> dict[str, Any]:
    """cProfile of ``rows`` rows of the generic reader and writer loop."""
    import cProfile
    import io
    import pstats

    from django.test.utils import override_settings

    from django_report_export.formats import get_writer_class
    from django_report_export.readers import OrmChunkReader

    queryset, names, selected = service_rows()
    last = queryset.values_list("pk", flat=True)[rows - 1 : rows].first()
    if last is not None:
        queryset = queryset.filter(pk__lte=last)
    with override_settings(REPORT_EXPORT={"FAST_PATH": False}):
        writer = get_writer_class(export_format)(SERVICE, names)
    reader = OrmChunkReader(queryset, selected, writer)
    profiler = cProfile.Profile()
    processed, last_key = 0, None
    started = time.perf_counter()
    profiler.enable()
    with out.open("wb") as file:
        while True:
            chunk = reader.read(last_key, CHUNK_SIZE, first=processed == 0)
            file.writelines(chunk.pieces())
            processed += chunk.count
            last_key = chunk.last_key
            if chunk.count < CHUNK_SIZE:
                break
    profiler.disable()
    seconds = time.perf_counter() - started
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(18)
    return {"seconds": seconds, "rows": processed, "profile": text.getvalue()}


def login_session() -> str:
    """A session key of a user allowed to read the service (for the load test)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.test import Client

    from django_report_export.registry import site

    app_label, codename = site.get(SERVICE).get_permission().split(".")
    user, _ = get_user_model()._default_manager.get_or_create(username="bench-load")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
    )
    client = Client()
    client.force_login(user)
    return str(client.cookies["sessionid"].value)


METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "copy-psycopg": copy_psycopg,
    "copy-documents-jsonl": copy_documents_jsonl,
    "drf-nested-json": drf_nested_json,
    "naive-values-list-csv": naive_values_list_csv,
    "naive-models-csv": naive_models_csv,
    "naive-values-json": naive_values_json,
    "naive-values-xml": naive_values_xml,
    "naive-xlsxwriter-xlsx": naive_xlsxwriter,
    "naive-openpyxl-xlsx": naive_openpyxl,
    "import-export-csv": import_export_csv,
    "import-export-xlsx": import_export_xlsx,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.methods")
    parser.add_argument("method")
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--rows", type=int, default=100_000, help="rows to profile")
    args = parser.parse_args(argv)
    setup_django()
    method: str = args.method
    if method == "sql":
        print(service_sql())
        return 0
    if method == "session":
        print(login_session())
        return 0
    if method == "shape":
        print(json.dumps(service_shape()))
        return 0
    if method == "reset":
        print(json.dumps(reset()))
        return 0
    if args.out is None:
        parser.error("OUT is required")
    kind, _, export_format = method.rpartition("-")
    if kind in ("job", "shards"):  # BENCH_WORKERS tells them apart
        result = job(args.out, export_format)
    elif kind == "loop":
        result = loop(args.out, export_format)
    elif method == "fetch":
        result = fetch(args.out)
    elif kind == "profile":
        result = profile(args.out, export_format, args.rows)
    elif method in METHODS:
        result = METHODS[method](args.out)
    else:
        parser.error(f"unknown method {method!r}")
    print(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
