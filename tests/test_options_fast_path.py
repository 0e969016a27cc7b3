"""The PostgreSQL fast path with the start options: the same bytes as the generic reader for
each option on every service, or the generic reader where it cannot (datetimes in another time
zone)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from django.db import connection

from django_report_export.columns import header_labels, is_document
from django_report_export.formats import get_writer_class
from django_report_export.options import FileOptions, with_labels
from django_report_export.readers import OrmChunkReader
from django_report_export.readers.fast_path import ALL_FORMATS, postgres_reader
from django_report_export.registry import site

from .support.demo import flat_columns
from .test_readers import export_bytes, shop  # noqa: F401  (the fixture)

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the fast path is PostgreSQL's"),
    pytest.mark.django_db(transaction=True),
]

#: The flat services (documents take the generic path: tests/test_documents.py).
SERVICES = [service.name for service in site if not is_document(service)]
CSV_CASES = [
    {"delimiter": ";"},
    {"delimiter": "\t"},
    {"delimiter": "|"},
    {"bom": True},
    {"line_ending": "crlf"},
    {"decimal_separator": ","},
    {"decimal_separator": ",", "delimiter": ";"},
    {"header": "labels"},
    {"header": "none"},
    {
        "delimiter": ";",
        "bom": True,
        "line_ending": "crlf",
        "decimal_separator": ",",
        "header": "labels",
    },
]


def readers(service_name: str, export_format: str, options: FileOptions) -> tuple[Any, Any]:
    service = site.get(service_name)
    names, fields = flat_columns(service)
    queryset = service.get_queryset().order_by("pk")
    options = with_labels(options, service.model, names, labels=header_labels(service, names))
    writers = []
    for _ in range(2):
        writer = get_writer_class(export_format)(service_name, names)
        writer.options = options
        writers.append(writer)
    orm = OrmChunkReader(queryset, fields, writers[0])
    return orm, postgres_reader(queryset, fields, writers[1], ALL_FORMATS)


@pytest.mark.parametrize("values", CSV_CASES, ids=lambda values: ",".join(map(str, values.items())))
def test_every_csv_option_gives_the_same_bytes_on_both_paths(shop: Any, values: dict) -> None:  # noqa: F811
    options = replace(FileOptions(), **values)
    for service_name in SERVICES:
        orm, fast = readers(service_name, "csv", options)
        assert fast is not None, f"{service_name} left the fast path for {values}"
        assert fast.name == "postgresql-copy"
        for chunk_size in (7, 5000):
            assert export_bytes(fast, chunk_size) == export_bytes(orm, chunk_size), service_name


@pytest.mark.parametrize("export_format", ["csv", "json", "xml"])
def test_another_time_zone_takes_the_generic_path_for_datetimes_only(
    shop: Any,  # noqa: F811
    export_format: str,
) -> None:
    options = FileOptions(timezone="Europe/Berlin")
    fast_services, generic_services = [], []
    for service_name in SERVICES:
        orm, fast = readers(service_name, export_format, options)
        if fast is None:
            generic_services.append(service_name)
            continue
        fast_services.append(service_name)
        assert export_bytes(fast, 100) == export_bytes(orm, 100), service_name
    assert "product" in generic_services  # created_at, updated_at
    assert fast_services  # services without a datetime column stay on the fast path
    _, fast = readers("product", export_format, FileOptions())
    assert fast is not None
