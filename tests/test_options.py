"""The start options (docs/formats.md, "File options"): each CSV dialect read back by the csv
module and by LibreOffice, the formula guard in each of them, datetimes in another time zone in
every format, the options on the record, in the status body, the history, the command and the
schema, and the same bytes after a pause or in shards."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import shutil
import subprocess
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import translation
from lxml import etree

from django_report_export import control
from django_report_export.admin.actions import ACTION_PREFIX
from django_report_export.models import ReportExport, Status
from django_report_export.options import UTF8_BOM, FileOptions, field_label
from testproject.shop.factories import ProductFactory
from testproject.shop.models import CustomerAccount, Inquiry, Product

from .support.formula_guard import guarded
from .support.polling import while_running
from .support.workers import WorkerProcess, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

UTC = dt.UTC
GENERIC_READER = "generic"
#: The read path a CSV of products without datetimes takes on this database.
FAST_READER = "postgresql-copy" if connection.vendor == "postgresql" else GENERIC_READER
#: Names that hold every delimiter, quotes, line ends and formula signs.
AWKWARD_NAMES = [
    "plain",
    "comma, semicolon; tab\tbar|",
    'quote " inside',
    "line\nend\r\nand CR\r",
    "=1+1",
    "-2+3",
    "@SUM(A1)",
    "a;=HYPERLINK(1)",
    "b\t+c",
    "x|-y",
    "Müller & Söhne",
    " \uff1dfull-width",
]


def use(settings: Any, **values: Any) -> None:
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, **values}


def download(api: Any, service: str) -> bytes:
    response = api.get(f"/api/report/{service}/download")
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def export_file(api: Any, worker: Any, service: str, query: str) -> bytes:
    response = api.post(f"/api/report/{service}/start?{query}")
    assert response.status_code == 202, response.content
    worker()
    assert api.get(f"/api/report/{service}/status").json()["status"] == Status.FINISHED
    return download(api, service)


def products(names: list[str] = AWKWARD_NAMES) -> list[Product]:
    made = ProductFactory.create_batch(len(names))
    prices = [Decimal("1234.50"), Decimal("-0.01"), Decimal("7"), Decimal("0.00")]
    for index, (product, name) in enumerate(zip(made, names, strict=True)):
        product.name = name
        product.price = prices[index % len(prices)]
        product.save()
    return made


def read_csv(data: bytes, delimiter: str) -> list[list[str]]:
    text = data.decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


# --- 400 naming the parameter --------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("format=csv&delimiter=x", "delimiter"),
        ("format=csv&delimiter=,,", "delimiter"),
        ("format=csv&delimiter=;&delimiter=,", "delimiter"),
        ("format=csv&bom=maybe", "bom"),
        ("format=csv&bom=yes", "bom"),
        ("format=csv&line_ending=cr", "line_ending"),
        ("format=csv&decimal_separator=;", "decimal_separator"),
        ("format=csv&header=titles", "header"),
        ("format=csv&timezone=Mars/Olympus", "timezone"),
        ("format=csv&timezone=", "timezone"),
        ("format=json&timezone=../etc/passwd", "timezone"),
        ("format=json&delimiter=x", "delimiter"),
        ("format=xlsx&decimal_separator=;", "decimal_separator"),
        ("format=jsonl&header=titles", "header"),
        ("format=json&bom=yes", "bom"),
    ],
)
def test_a_bad_option_is_a_400_naming_it(api: Any, query: str, parameter: str) -> None:
    response = api.post(f"/api/report/product/start?{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["type"] == "invalid"
    assert list(body["errors"]) == [parameter]
    assert parameter in body["detail"]
    assert not ReportExport.objects.exists()


# --- recorded, and shown ---------------------------------------------------------------------

ALL_ON = "delimiter=tab&bom=true&line_ending=crlf&decimal_separator=,&header=none"


def test_the_options_are_recorded_and_shown_in_the_status_and_the_history(api, worker) -> None:
    products()
    query = f"format=csv&{ALL_ON}&timezone=Europe/Berlin&fields=id,name,price"
    response = api.post(f"/api/report/product/start?{query}")
    assert response.status_code == 202, response.content
    expected = {
        "delimiter": "\t",
        "bom": True,
        "line_ending": "crlf",
        "decimal_separator": ",",
        "header": "none",
        "timezone": "Europe/Berlin",
    }
    assert response.json()["options"] == expected
    worker()
    status = api.get("/api/report/product/status").json()
    assert status["status"] == Status.FINISHED
    assert status["options"] == expected
    (entry,) = api.get("/api/report/product/history").json()["results"]
    assert entry["options"] == expected
    # No datetime among the fields: the time zone does not keep the export off the fast path.
    assert entry["reader"] == FAST_READER
    export = ReportExport.objects.get()
    assert export.options == expected
    assert export.reader == FAST_READER


def test_the_defaults_come_from_the_settings_and_csv_options_only_for_csv(api, settings) -> None:
    use(settings, CSV_DELIMITER=";", CSV_BOM=True, CSV_DECIMAL_SEPARATOR=",", TIMEZONE="Asia/Tokyo")
    body = api.post("/api/report/product/start?format=csv").json()
    assert body["options"] == {
        "delimiter": ";",
        "bom": True,
        "line_ending": "lf",
        "decimal_separator": ",",
        "header": "names",
        "timezone": "Asia/Tokyo",
    }
    body = api.post("/api/report/product/start?format=json&timezone=UTC").json()
    assert body["options"] == {"timezone": "UTC"}


def test_a_csv_option_for_another_format_is_accepted_and_has_no_effect(api, worker) -> None:
    products(["a;b"])
    plain = export_file(api, worker, "product", "format=json&fields=id,name,price")
    query = "format=json&fields=id,name,price&delimiter=;&bom=true&decimal_separator=,"
    assert export_file(api, worker, "product", query) == plain
    assert api.get("/api/report/product/status").json()["options"] == {"timezone": "UTC"}


@pytest.mark.parametrize("tab", ["tab", "%09", "TAB"])
def test_tab_is_taken_by_name_and_as_the_character(api, tab: str) -> None:
    response = api.post(f"/api/report/product/start?format=csv&delimiter={tab}")
    if tab == "TAB":  # the names are lower case, as the schema lists them
        assert response.status_code == 400
        return
    assert response.status_code == 202, response.content
    assert response.json()["options"]["delimiter"] == "\t"


def test_an_export_recorded_before_options_is_written_as_before(settings) -> None:
    """A record without options (from before them) is read as the file it always was, not
    with the project's defaults of today."""
    use(settings, CSV_DELIMITER=";", CSV_BOM=True, TIMEZONE="Europe/Berlin")
    assert FileOptions.from_json({}) == FileOptions()
    assert FileOptions().public() == {
        "delimiter": ",",
        "bom": False,
        "line_ending": "lf",
        "decimal_separator": ".",
        "header": "names",
        "timezone": "UTC",
    }


# --- each dialect read back ----------------------------------------------------------------

DIALECTS = [
    {},
    {"delimiter": ";", "bom": "true", "decimal_separator": ","},
    {"delimiter": "tab", "line_ending": "crlf"},
    {"delimiter": "|", "header": "labels"},
    {"delimiter": ",", "decimal_separator": ",", "line_ending": "crlf", "bom": "true"},
    {"header": "none", "delimiter": ";"},
]


@pytest.mark.parametrize(
    "dialect", DIALECTS, ids=lambda d: "&".join(f"{k}={v}" for k, v in d.items())
)
def test_each_dialect_reads_back_with_the_csv_module(api, worker, dialect: dict[str, str]) -> None:
    made = products()
    query = "&".join(
        [
            "format=csv",
            "fields=id,name,price,category_name",
            *(f"{name}={value}" for name, value in dialect.items()),
        ]
    )
    data = export_file(api, worker, "product", query)
    delimiter = {"tab": "\t"}.get(dialect.get("delimiter", ","), dialect.get("delimiter", ","))
    end = b"\r\n" if dialect.get("line_ending") == "crlf" else b"\n"
    assert data.startswith(UTF8_BOM) == (dialect.get("bom") == "true")
    assert data.endswith(end)
    if end == b"\n":
        assert data.count(b"\r\n") == sum(name.count("\r\n") for name in AWKWARD_NAMES)
    rows = read_csv(data, delimiter)
    header = {
        "names": ["id", "name", "price", "category_name"],
        "labels": ["ID", "name", "price", "Category"],
        "none": None,
    }[dialect.get("header", "names")]
    if header is not None:
        assert rows.pop(0) == header
    comma = dialect.get("decimal_separator") == ","
    expected = [
        [
            str(product.pk),
            guarded(product.name),
            str(product.price).replace(".", ",") if comma else str(product.price),
            guarded(product.category.name),
        ]
        for product in Product.objects.filter(pk__in=[p.pk for p in made]).order_by("pk")
    ]
    assert rows == expected


@pytest.mark.parametrize("delimiter", [",", ";", "tab", "|"])
def test_the_formula_guard_holds_with_every_delimiter(api, worker, delimiter: str) -> None:
    char = "\t" if delimiter == "tab" else delimiter
    names = [f"=1+1{char}x", f"ok{char}=2", f"ok{char} -3", f"{char}@A1", "+4", "\t=5"]
    products(names)
    data = export_file(api, worker, "product", f"format=csv&fields=name&delimiter={delimiter}")
    (header, *cells) = read_csv(data, char)
    assert header == ["name"]
    written = sorted(row[0] for row in cells)
    assert written == sorted(guarded(name) for name in names)
    # Every place a spreadsheet splitting at this delimiter would start a cell is guarded.
    for text in written:
        for piece in text.replace("\r", "\n").replace(char, "\n").split("\n"):
            stripped = piece.lstrip()
            assert not stripped or stripped[0] not in "=+-@", text


def test_decimal_commas_leave_integers_and_texts_alone(api, worker) -> None:
    products(["1.5", "-1.5"])
    data = export_file(
        api, worker, "product", "format=csv&fields=id,name,price,stock&decimal_separator=,"
    )
    rows = read_csv(data, ",")[1:]
    assert [row[1] for row in rows] == ["1.5", "'-1.5"]  # texts as they are (guarded)
    assert [row[2] for row in rows] == ["1234,50", "-0,01"]  # quoted: "," is the delimiter
    assert b'"1234,50"' in data
    assert all("," not in row[3] and "." not in row[3] for row in rows)


def test_header_labels_are_the_verbose_names_in_the_language_of_the_start(api, worker) -> None:
    api.post("/api/report/adminUser/start?format=csv&header=labels", HTTP_ACCEPT_LANGUAGE="de")
    worker()
    data = download(api, "adminUser")
    header = read_csv(data, ",")[0]
    user_model = get_user_model()
    with translation.override("de"):
        expected = [
            str(user_model._meta.get_field(name).verbose_name)
            for name in (
                "id",
                "username",
                "email",
                "first_name",
                "last_name",
                "is_staff",
                "is_superuser",
                "is_active",
                "date_joined",
                "last_login",
            )
        ]
    assert header == expected
    assert "Benutzername" in header
    assert "E-Mail-Adresse" in header
    assert ReportExport.objects.get().options["labels"] == expected
    assert "labels" not in api.get("/api/report/adminUser/status").json()["options"]


def test_a_label_follows_the_path_across_relations() -> None:
    email = CustomerAccount._meta.get_field("email").verbose_name
    assert field_label(Inquiry, "customer__email") == str(email)
    assert field_label(Product, "category__name") == "name"
    assert field_label(Product, "category_id") == "category"
    assert field_label(Product, "pk") == "ID"
    assert field_label(Product, "ean") == "EAN"


# --- time zones ------------------------------------------------------------------------------

#: Either side of the start of summer time in Berlin (2024-03-31 01:00 UTC).
BEFORE_DST = dt.datetime(2024, 3, 31, 0, 30, tzinfo=UTC)
AFTER_DST = dt.datetime(2024, 3, 31, 1, 30, tzinfo=UTC)
BERLIN = ["2024-03-31T01:30:00+01:00", "2024-03-31T03:30:00+02:00"]


def inquiries() -> None:
    call_command("seed_shop", orders=3, customers=2, products=2, seed=3, verbosity=0)
    Inquiry.objects.all().delete()
    for moment in (BEFORE_DST, AFTER_DST):
        Inquiry.objects.create(
            created_at=moment, email="a@example.com", subject="s", message="m", status="open"
        )


def created_texts(export_format: str, data: bytes) -> list[Any]:
    if export_format == "csv":
        return [row[1] for row in read_csv(data, ",")[1:]]
    if export_format == "json":
        return [item["created_at"] for item in json.loads(data)]
    if export_format == "jsonl":
        return [json.loads(line)["created_at"] for line in data.splitlines()]
    if export_format == "xml":
        return [element.text for element in etree.fromstring(data).iter("created_at")]
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    return [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)]


@pytest.mark.parametrize("export_format", ["csv", "json", "jsonl", "xml", "xlsx"])
def test_datetimes_are_written_in_the_time_zone_across_a_dst_change(
    api, worker, export_format: str
) -> None:
    inquiries()
    query = f"format={export_format}&fields=id,created_at,answered_at"
    # Sorted: the keys of inquiries are UUIDs, in no order of time.
    utc = sorted(created_texts(export_format, export_file(api, worker, "inquiry", query)))
    berlin = export_file(api, worker, "inquiry", f"{query}&timezone=Europe/Berlin")
    written = sorted(created_texts(export_format, berlin))
    if export_format == "xlsx":
        # Excel has no time zone: the wall time in Berlin, one hour apart and two.
        assert utc == [BEFORE_DST.replace(tzinfo=None), AFTER_DST.replace(tzinfo=None)]
        assert written == [dt.datetime(2024, 3, 31, 1, 30), dt.datetime(2024, 3, 31, 3, 30)]
    else:
        assert utc == ["2024-03-31T00:30:00+00:00", "2024-03-31T01:30:00+00:00"]
        assert written == BERLIN
        assert [dt.datetime.fromisoformat(text) for text in written] == [BEFORE_DST, AFTER_DST]
    assert ReportExport.objects.order_by("created_at").last().reader == GENERIC_READER


# --- the same bytes after a pause, a lost worker's continuation or in shards --------------------

GERMAN = "format=csv&delimiter=;&bom=true&line_ending=crlf&decimal_separator=,&header=labels"


def test_pause_and_resume_give_the_same_bytes_with_options(api, worker, settings) -> None:
    ProductFactory.create_batch(60)
    use(settings, CHUNK_SIZE=4, CHECKPOINT_INTERVAL=0)
    query = f"{GERMAN}&timezone=America/New_York"
    uninterrupted = export_file(api, worker, "product", query)
    assert uninterrupted.count(UTF8_BOM) == 1
    api.post(f"/api/report/product/start?{query}")
    poller = while_running("product", 20, control.pause)
    worker()
    poller.join()
    assert poller.error is None
    export = ReportExport.objects.get(status=Status.PAUSED)
    assert 20 <= export.checkpoint["processed"] < 60
    assert api.post("/api/report/product/resume").status_code == 200
    worker()
    assert download(api, "product") == uninterrupted
    rows = read_csv(uninterrupted, ";")
    assert len(rows) == 61
    assert rows[0][0] == "ID"


def test_a_sharded_export_honours_the_options(api, worker, settings, caplog) -> None:
    ProductFactory.create_batch(40)
    use(settings, SHARD_ROWS=None, CHUNK_SIZE=7)
    query = f"{GERMAN}&timezone=Australia/Lord_Howe"
    expected = export_file(api, worker, "product", query)
    use(settings, SHARD_ROWS=10, CHUNK_SIZE=7)
    with caplog.at_level(logging.INFO, logger="django_report_export"):
        assert export_file(api, worker, "product", query) == expected
    began = [
        message for message in caplog.messages if " shard " in message and " began " in message
    ]
    assert len(began) == 4
    assert expected.startswith(UTF8_BOM)
    assert expected.count(UTF8_BOM) == 1
    assert read_csv(expected, ";")[0][0] == "ID"


# --- the command, the schema, the admin ----------------------------------------------------------


def test_the_command_takes_each_option_as_a_flag(worker) -> None:
    ProductFactory.create_batch(3)
    call_command(
        "report_export", "start", "product", "--format", "csv", "--delimiter", ";", "--bom",
        "--line-ending", "crlf", "--decimal-separator", ",", "--header", "labels",
        "--timezone", "Europe/Vienna", stdout=io.StringIO(),
    )  # fmt: skip
    export = ReportExport.objects.get()
    assert {name: value for name, value in export.options.items() if name != "labels"} == {
        "delimiter": ";",
        "bom": True,
        "line_ending": "crlf",
        "decimal_separator": ",",
        "header": "labels",
        "timezone": "Europe/Vienna",
    }
    call_command(
        "report_export", "start", "product", "--format", "json", "--timezone", "UTC",
        stdout=io.StringIO(),
    )  # fmt: skip
    assert ReportExport.objects.order_by("created_at").last().options == {"timezone": "UTC"}
    call_command(
        "report_export", "start", "product", "--format", "csv", "--no-bom", stdout=io.StringIO()
    )
    assert ReportExport.objects.order_by("created_at").last().options["bom"] is False


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--delimiter", "x"], "--delimiter"),
        (["--line-ending", "cr"], "--line-ending"),
        (["--decimal-separator", ";"], "--decimal-separator"),
        (["--timezone", "Nowhere/Else"], "--timezone"),
    ],
)
def test_a_bad_flag_names_itself(flags: list[str], named: str) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("report_export", "start", "product", "--format", "csv", *flags)
    assert named in str(raised.value)
    assert not ReportExport.objects.exists()


def test_the_schema_lists_the_options(api) -> None:
    from .test_api_schema import parameters, served_schema

    schema = served_schema(api)
    start = parameters(schema, "/api/report/product/start", "post")
    assert start["delimiter"]["schema"] == {"type": "string", "enum": [",", ";", "tab", "|", "\t"]}
    assert start["bom"]["schema"] == {"type": "boolean"}
    assert start["line_ending"]["schema"]["enum"] == ["lf", "crlf"]
    assert start["decimal_separator"]["schema"]["enum"] == [".", ","]
    assert start["header"]["schema"]["enum"] == ["names", "labels", "none"]
    zones = schema["components"]["schemas"]["TimeZone"]
    assert start["timezone"]["schema"] == {"$ref": "#/components/schemas/TimeZone"}
    assert {"UTC", "Europe/Berlin", "America/New_York"} <= set(zones["enum"])
    assert "CSV_DELIMITER" in start["delimiter"]["description"]
    order = parameters(schema, "/api/report/order/start", "post")  # no CSV format
    assert "timezone" in order
    assert "delimiter" not in order


def test_the_admin_shows_the_options_and_the_reader(admin_user_, worker) -> None:
    from django.test import Client

    ProductFactory.create_batch(2)
    client = Client()
    client.force_login(admin_user_)
    from django_report_export.registry import site

    service = site.get("product")
    params = {"format": ["csv"], "delimiter": [";"], "fields": ["id,name"]}
    status = control.start(service, control.parse_request(service, params))
    worker()
    html = client.get(f"/admin/django_report_export/reportexport/{status['id']}/change/")
    text = html.content.decode()
    assert "delimiter=&quot;;&quot;" in text
    assert "timezone=&quot;UTC&quot;" in text
    assert FAST_READER in text


def test_the_admin_action_starts_with_the_options(admin_user_, worker) -> None:
    from django.test import Client

    from .test_admin import hidden_value, run_action, submit

    made = ProductFactory.create_batch(3)
    client = Client()
    client.force_login(admin_user_)
    html = run_action(
        client,
        "/admin/shop/product/",
        {"action": f"{ACTION_PREFIX}product", "_selected_action": [made[0].pk], "index": 0},
    )
    assert 'name="delimiter"' in html
    assert 'name="timezone"' in html
    assert hidden_value(html, "service") == "product"
    export_id = submit(
        client, html, format="csv", columns=["id", "price"], delimiter=";",
        decimal_separator=",", bom="true", timezone="Europe/Berlin",
    )  # fmt: skip
    export = ReportExport.objects.get(pk=export_id)
    assert export.options["delimiter"] == ";"
    assert export.options["bom"] is True
    assert export.options["timezone"] == "Europe/Berlin"
    # CSV options are left out for another format, whatever the form sent.
    html = run_action(
        client,
        "/admin/shop/product/",
        {"action": f"{ACTION_PREFIX}product", "_selected_action": [made[1].pk], "index": 0},
    )
    export_id = submit(client, html, format="json", columns=["id"], delimiter=";")
    assert ReportExport.objects.get(pk=export_id).options == {"timezone": "UTC"}


def test_the_browsable_form_offers_the_options_and_posts_them(api, worker) -> None:
    html = api.get("/api/report/product/start", HTTP_ACCEPT="text/html").content.decode()
    for name in ("delimiter", "bom", "line_ending", "decimal_separator", "header", "timezone"):
        assert f'name="{name}"' in html, name
    # The form posts every input; blank ones are the project's defaults.
    form = {"format": "csv", "fields": "", "delimiter": ";", "bom": "", "timezone": ""}
    response = api.post("/api/report/product/start", form, HTTP_ACCEPT="text/html")
    assert response.status_code == 202
    options = ReportExport.objects.get().options
    assert (options["delimiter"], options["bom"], options["timezone"]) == (";", False, "UTC")


@pytest.mark.slow
def test_a_lost_workers_continuation_gives_the_same_bytes_with_options(
    api, worker, settings, tmp_path
) -> None:
    call_command("seed_shop", orders=10, customers=1500, products=5, seed=5, verbosity=0)
    query = f"{GERMAN}&timezone=Europe/Berlin"
    use(settings, CHUNK_SIZE=2)
    uninterrupted = export_file(api, worker, "customerAccount", query)
    failure = {"CHUNK_SIZE": 2, "CHECKPOINT_INTERVAL": 0, "HEARTBEAT_INTERVAL": 0.2}
    failure["STALE_AFTER"] = 1.5
    use(settings, **failure)  # the status read finds the heartbeat stale after STALE_AFTER

    def status() -> dict[str, Any]:
        return api.get("/api/report/customerAccount/status").json()

    assert api.post(f"/api/report/customerAccount/start?{query}").status_code == 202
    with WorkerProcess(tmp_path / "worker-1.log", **failure) as first:
        wait_for(lambda: status()["processed"] >= 500)
        first.kill()
    assert status()["status"] == Status.RUNNING
    with WorkerProcess(tmp_path / "worker-2.log", **failure):
        wait_for(lambda: status()["status"] == Status.FINISHED, timeout=120)
    assert ReportExport.objects.get(status=Status.FINISHED, retries=1).processed == 1500
    assert download(api, "customerAccount") == uninterrupted
    assert uninterrupted.count(UTF8_BOM) == 1


# --- LibreOffice -------------------------------------------------------------------------------


def soffice_cells(path: Path, tmp_path: Path, infilter: str) -> list[list[Any]]:
    """The CSV at ``path`` as LibreOffice Calc imports it with ``infilter``, saved as xlsx
    (whose cells say which are numbers) and read by openpyxl."""
    subprocess.run(
        [
            "soffice",
            f"-env:UserInstallation=file://{tmp_path / 'profile'}",
            "--headless",
            f"--infilter={infilter}",
            "--convert-to",
            "xlsx",
            "--outdir",
            str(tmp_path),
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    workbook = openpyxl.load_workbook(tmp_path / f"{path.stem}.xlsx")
    return [list(row) for row in workbook.active.iter_rows(values_only=True)]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_libreoffice_opens_a_german_csv_with_numbers_as_numbers(api, worker, tmp_path) -> None:
    made = products(["Müller; Söhne", "=1+1", "plain"])
    data = export_file(api, worker, "product", f"{GERMAN}&fields=id,name,price,stock")
    path = tmp_path / "products.csv"
    path.write_bytes(data)
    # Separator ";" (59), text delimiter '"' (34), UTF-8 (76), from line 1, no column
    # formats, German (1031): the import a German Excel makes of it.
    cells = soffice_cells(path, tmp_path, "CSV:59,34,76,1,,1031")
    assert cells[0] == ["ID", "name", "price", "stock"]
    expected = [
        [product.pk, guarded(product.name), float(product.price), product.stock]
        for product in Product.objects.filter(pk__in=[p.pk for p in made]).order_by("pk")
    ]
    assert cells[1:] == expected
    assert all(isinstance(row[2], int | float) for row in cells[1:])  # numbers, not texts


def test_a_zip_of_an_xlsx_is_not_touched_by_csv_options(api, worker) -> None:
    """xlsx takes only ``timezone``; its bytes are those of an export before options."""
    ProductFactory.create_batch(3)
    first = export_file(api, worker, "product", "format=xlsx&fields=id,name,price")
    second = export_file(api, worker, "product", "format=xlsx&fields=id,name,price&timezone=UTC")
    assert first == second
    assert zipfile.ZipFile(io.BytesIO(first)).testzip() is None
