"""Every service of the demo shop exported in each of its formats through the real API, a real
Redis and a burst RQ worker, the downloaded file parsed back and compared with the queryset
row by row, value by value (SPEC §2, docs/formats.md).

The expected text of each value is written here from the documented rules, independently of
the package's converters, so a converter bug shows up as a difference.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import gzip
import io
import json
import re
import uuid
from decimal import Decimal
from functools import cache
from typing import Any
from urllib.parse import urlencode

import openpyxl
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from factory.random import reseed_random
from lxml import etree

from django_report_export.columns import column_names, columns_of, is_document
from django_report_export.documents import sheet_labels
from django_report_export.models import Status
from django_report_export.registry import site
from testproject.shop import factories as f
from testproject.shop.models import Order

from .support.formula_guard import guarded
from .support.sweeps import covering

pytestmark = pytest.mark.django_db(transaction=True)

#: Every (service, format) pair of the registry: 16 services, 33 pairs.
#: The flat services: the demo's 15 and the suite's flat orders (the demo's ``order`` is a
#: document: tests/test_demo_order.py).
FLAT = [service for service in site if not is_document(service)]
CASES = [
    pytest.param(service.name, export_format, id=f"{service.name}-{export_format}")
    for service in FLAT
    for export_format in service.formats
]

#: First characters that make the CSV writer prefix a text cell with ``'``.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

#: XML 1.0 ``Char``: everything else is written as U+FFFD.
XML_CHAR_RANGES = (
    (0x9, 0x9),
    (0xA, 0xA),
    (0xD, 0xD),
    (0x20, 0xD7FF),
    (0xE000, 0xFFFD),
    (0x10000, 0x10FFFF),
)

#: Latin-1, CJK, and two characters beyond the BMP (4 UTF-8 bytes each): 🎉 and U+1D518.
ZOE = "Zoë 日本 🎉 \U0001d518"
UTC = dt.UTC


# --- The documented value rules, written out independently ---------------------------------


def expected_text(value: Any) -> str:
    """CSV cell / XML text of a value that is neither ``None`` nor ``str``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        text = format(value, "f")  # exact fixed point, never exponent notation
        assert "E" not in text
        return text
    if isinstance(value, dt.datetime):
        assert value.utcoffset() == dt.timedelta(0), value  # values_list gives UTC
        text = value.isoformat()
        assert text.endswith("+00:00"), text
        return text
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        text = str(value)  # canonical: 8-4-4-4-12 lowercase hex digits
        assert re.fullmatch("[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", text), text
        return text
    raise AssertionError(f"No rule in this test for {type(value).__name__} {value!r}")


def expected_csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return guarded(value)
    return expected_text(value)


def expected_json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    return expected_text(value)  # decimals, datetimes and dates are JSON strings


def expected_jsonl(value: Any) -> Any:
    return expected_json(value)  # the same objects as json, one a line


def expected_xlsx(value: Any) -> Any:
    """The cell's value as openpyxl reads it back: numbers, booleans, naive datetimes in UTC
    (dates at midnight), text with XML-forbidden characters as U+FFFD."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return expected_xml(value)
    if isinstance(value, Decimal):
        text = format(value, "f")
        return float(text) if "." in text else int(text)
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    return expected_text(value)


def same_cell(got: Any, wanted: Any) -> bool:
    """Equal and of one type; datetimes within the millisecond openpyxl rounds them to."""
    if isinstance(wanted, dt.datetime):
        return isinstance(got, dt.datetime) and abs(got - wanted) <= dt.timedelta(milliseconds=1)
    return type(got) is type(wanted) and got == wanted


def xml_allowed(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in XML_CHAR_RANGES)


def expected_xml(value: Any) -> str | None:
    """Element text, or ``None`` when the element must be absent."""
    if value is None:
        return None
    if isinstance(value, str):
        return "".join(char if xml_allowed(char) else "\ufffd" for char in value)
    return expected_text(value)


def typed(values: list[Any]) -> list[tuple[str, Any]]:
    """Values with their types, so that ``1 == True`` or ``"1" == 1`` cannot pass."""
    return [(type(value).__name__, value) for value in values]


# --- Parsers --------------------------------------------------------------------------------


def parse_csv(data: bytes) -> tuple[list[str], list[list[str]]]:
    assert not data.startswith(codecs.BOM_UTF8)
    assert data.endswith(b"\n")  # every record ends a line (line-end style: test_formats)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True))
    return rows[0], rows[1:]


def parse_json(data: bytes) -> list[dict[str, Any]]:
    assert data.startswith(b"[\n")
    assert data.endswith(b"]\n")
    parsed = json.loads(data.decode("utf-8"))
    assert isinstance(parsed, list)
    return parsed


def parse_xml(data: bytes, service: str) -> list[list[tuple[str, str]]]:
    """The records, each the list of its children's (name, text)."""
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False))
    assert root.tag == f"{service}List"
    assert not root.attrib
    records = []
    for record in root:
        assert record.tag == service
        assert not record.attrib
        children = []
        for child in record:
            assert not child.attrib
            assert len(child) == 0
            children.append((child.tag, child.text or ""))
        records.append(children)
    return records


def parse_jsonl(data: bytes) -> list[dict[str, Any]]:
    assert data.endswith(b"\n") or not data
    return [json.loads(line) for line in data.decode("utf-8").split("\n")[:-1]]


def parse_xlsx(data: bytes) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """The header row and the rows of the workbook's only sheet, as openpyxl reads them."""
    workbook = openpyxl.load_workbook(io.BytesIO(data))
    assert len(workbook.worksheets) == 1
    sheet = workbook.worksheets[0]
    assert sheet.freeze_panes == "A2"
    rows = list(sheet.iter_rows(values_only=True))
    assert all(cell.font.b for cell in sheet[1])
    return list(rows[0]), rows[1:]


# --- Comparison with the queryset -------------------------------------------------------------


def expected_rows(service_name: str, names: list[str] | tuple[str, ...], **filters: Any):
    """The rows of the columns ``names`` of a flat service, read through their paths."""
    service = site.get(service_name)
    paths = {column.name: column.path for column in columns_of(service)}
    queryset = service.get_queryset().filter(**filters).order_by("pk")
    return list(queryset.values_list(*(paths.get(name, name) for name in names)))


def assert_matches(data: bytes, service: str, export_format: str, fields, rows) -> None:
    """The parsed file equals ``rows`` (from ``values_list(*fields)``), value by value."""
    fields = list(fields)
    if export_format == "csv":
        header, cells = parse_csv(data)
        assert header == fields
        assert len(cells) == len(rows)
        for number, (got, row) in enumerate(zip(cells, rows, strict=True)):
            assert got == [expected_csv(value) for value in row], f"row {number}"
    elif export_format == "json":
        objects = parse_json(data)
        assert len(objects) == len(rows)
        assert data.count(b"\n") == len(rows) + 2  # "[", one object a line, "]"
        for number, (got, row) in enumerate(zip(objects, rows, strict=True)):
            assert list(got) == fields, f"row {number}"
            wanted = [expected_json(value) for value in row]
            assert typed(list(got.values())) == typed(wanted), f"row {number}"
    elif export_format == "xml":
        records = parse_xml(data, service)
        assert len(records) == len(rows)
        for number, (got, row) in enumerate(zip(records, rows, strict=True)):
            wanted = [
                (name, text)
                for name, text in zip(fields, map(expected_xml, row), strict=True)
                if text is not None
            ]
            assert got == wanted, f"row {number}"
    elif export_format == "jsonl":
        objects = parse_jsonl(data)
        assert len(objects) == len(rows) == data.count(b"\n")
        for number, (got, row) in enumerate(zip(objects, rows, strict=True)):
            assert list(got) == fields, f"row {number}"
            wanted = [expected_jsonl(value) for value in row]
            assert typed(list(got.values())) == typed(wanted), f"row {number}"
    elif export_format == "xlsx":
        header, cells = parse_xlsx(data)
        assert header == list(sheet_labels(site.get(service), fields, "xlsx") or fields)
        assert len(cells) == len(rows)
        for number, (got, row) in enumerate(zip(cells, rows, strict=True)):
            wanted = [expected_xlsx(value) for value in row]
            differing = [
                (field, cell, want)
                for field, cell, want in zip(fields, got, wanted, strict=True)
                if not same_cell(cell, want)
            ]
            assert not differing, f"row {number}"
    else:  # pragma: no cover - a new format needs its parser here
        raise AssertionError(f"No parser in this test for {export_format!r}")


# --- The API --------------------------------------------------------------------------------


def run_export(api, worker, service: str, **params: str) -> tuple[bytes, dict[str, Any]]:
    """Start an export through the API, run it, and download the file."""
    started = api.post(f"/api/report/{service}/start?{urlencode(params)}")
    assert started.status_code == 202, started.content
    worker()
    status = api.get(f"/api/report/{service}/status").json()
    assert status["status"] == Status.FINISHED, status
    response = api.get(f"/api/report/{service}/download")
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content), status


# --- Data -----------------------------------------------------------------------------------


@cache
def pbkdf2_hash() -> str:
    """A real PBKDF2 hash (as Django's default hasher stores it), made once."""
    return PBKDF2PasswordHasher().encode("s3cret-pw", "fixedsalt0123456")


def at(day: int, hour: int = 12, microsecond: int = 0) -> dt.datetime:
    return dt.datetime(2024, 5, day, hour, 30, 15, microsecond, tzinfo=UTC)


@pytest.fixture
def shop(api):
    """A few rows of every model, with the awkward values placed explicitly."""
    reseed_random(20240501)
    password = pbkdf2_hash()

    # adminUser: staff (exported) and non-staff (not exported) users.
    f.StaffUserFactory(
        username="zoe", first_name=ZOE, last_name="=Admin", last_login=None, password=password
    )
    f.SuperUserFactory(
        username="root", first_name='Anna "Annie"', last_name="Smith, Jr.", password=password
    )
    f.StaffUserFactory(username="gone", is_active=False, first_name="-1", password=password)
    f.UserFactory(username="shopper", first_name="Not", last_name="Staff", password=password)
    f.UserFactory(username="shopper2", password=password)
    # The factory hashes what it is given: store the hash itself.
    get_user_model().objects.exclude(username="boss").update(password=password)

    # category: a root, a child with a formula name, a few more.
    root = f.CategoryFactory(
        name=ZOE, description='first line\r\nsecond "quoted", line', parent=None
    )
    child = f.CategoryFactory(name="=SUM(A1:A2)", parent=root, description="", is_active=False)
    f.CategoryFactory.create_batch(2, parent=child)

    # customerAccount
    zoe = f.CustomerAccountFactory(
        email="zoe@example.com",
        first_name=ZOE,
        last_name='O\'Brien, "Jr."',
        company="",
        phone="\t+49 30 1234567",
        city="-Minus",
        street="@home 1\nBack yard",
        birth_date=None,
        credit_balance=Decimal("0.10"),
        last_login_at=None,
    )
    rich = f.CustomerAccountFactory(
        email="rich@example.com",
        first_name="+Plus",
        birth_date=dt.date(1970, 1, 2),
        credit_balance=Decimal("1234567.89"),
        last_login_at=at(2, microsecond=123456),
    )
    customers = [zoe, rich, *f.CustomerAccountFactory.create_batch(3)]

    # dataFeedTemplate, dataFeed
    template = f.DataFeedTemplateFactory(
        name="\rCR template", body='sku;name\r\n{{ p.sku }};"{{ p.name }}"\r\n'
    )
    templates = [template, *f.DataFeedTemplateFactory.create_batch(2)]
    f.DataFeedFactory(template=template, name="=cmd|' /C calc'!A0", last_generated_at=None)
    for feed_template in templates:
        f.DataFeedFactory(template=feed_template)

    # product, inventory
    formula = f.ProductFactory(
        name="=SUM(A1:A2)",
        category=child,
        price=Decimal("0.10"),
        cost=Decimal("0.01"),
        stock=-5,
        description="",
        is_active=True,
    )
    big = f.ProductFactory(
        name='Tür "Deluxe", groß\r\nzweite Zeile',
        category=root,
        price=Decimal("1234567.89"),
        cost=Decimal("0.00"),
        is_active=False,
        ean="",
        description=ZOE,
    )
    products = [formula, big, *f.ProductFactory.create_batch(3, category=root)]
    products[2].is_active = False
    products[2].save()
    f.InventoryItemFactory(product=formula, warehouse="BER", quantity=-2)
    f.InventoryItemFactory(product=formula, warehouse="HAM")
    f.InventoryItemFactory(product=big, warehouse="MUC")

    # order, transaction: one with an XML-forbidden character, a CR and markup in its note.
    orders = [
        f.OrderFactory(
            customer=zoe,
            status="paid",
            subtotal=Decimal("0.10"),
            total=Decimal("1234567.89"),
            created_at=at(1, microsecond=500),
            paid_at=at(1, 13),
            note='vertical\x0btab, <b>&amp;</b>\r\nsecond line\x1f "quoted" ]]> 🎉',
        ),
        f.OrderFactory(customer=rich, status="pending", paid_at=None, note=""),
        f.OrderFactory(customer=rich, status="paid", note="=1+2"),
        *(f.OrderFactory(customer=customer) for customer in customers[2:]),
    ]
    for order in orders[:3]:
        f.TransactionFactory(order=order)
    f.TransactionFactory(order=orders[0], kind="refund", amount=Decimal("-12.50"))

    # inquiry: CRLF, quotes, a forbidden character, a guest (null customer).
    f.InquiryFactory(
        customer=None,
        email="guest@example.net",
        subject="@SUM(A1:A9)",
        message='Hello,\r\n"quotes", commas, and a vertical\x0btab and a form feed\x0c!',
        status="open",
        answered_at=None,
    )
    f.InquiryFactory(
        customer=zoe,
        email=zoe.email,
        subject=ZOE,
        message="\rstarts with CR\nthen LF\r\nthen CRLF\rthen CR <tag attr='x'> &",
        status="answered",
        answered_at=at(3, microsecond=999999),
    )
    f.InquiryFactory(customer=rich, email=rich.email, subject="", message="-42", status="closed")
    f.InquiryFactory.create_batch(3)

    # newsletterSubscriber
    f.NewsletterSubscriberFactory(
        customer=None, email="reader@mail.test", unsubscribed_at=None, confirmed=False
    )
    f.NewsletterSubscriberFactory(
        customer=zoe, email=zoe.email, confirmed=True, unsubscribed_at=at(4)
    )
    f.NewsletterSubscriberFactory.create_batch(2, customer=None)

    # productRating
    f.ProductRatingFactory(
        product=formula, customer=zoe, title="@Zoë 🎉", comment='-1 star\r\n"meh", really'
    )
    f.ProductRatingFactory(product=big, customer=rich, title="", comment="")
    f.ProductRatingFactory.create_batch(2, product=big, customer=rich)

    # seoViews
    f.SeoViewFactory(
        page_title="+Plus 日本 \U0001d518", bounce_rate=Decimal("0.10"), date=dt.date(2024, 2, 29)
    )
    f.SeoViewFactory(page_title='"Quoted", title', bounce_rate=Decimal("100.00"))
    f.SeoViewFactory.create_batch(2)

    # voucherPreset, voucherTemplate, voucher
    preset = f.VoucherPresetFactory(
        name="=1+2", value=Decimal("0.10"), min_order_value=Decimal("1234567.89")
    )
    presets = [preset, *f.VoucherPresetFactory.create_batch(2)]
    voucher_template = f.VoucherTemplateFactory(
        name=ZOE,
        subject='Your "voucher", {{ code }}',
        body_html="<html>\r\n<p>Hello, &ndash; 🎉</p>\r\n</html>",
    )
    f.VoucherTemplateFactory.create_batch(2)
    f.VoucherFactory(
        preset=None, template=None, customer=None, redeemed_at=None, value=Decimal("0.10")
    )
    f.VoucherFactory(
        preset=preset,
        template=voucher_template,
        customer=zoe,
        redeemed_at=at(5),
        value=Decimal("1234567.89"),
    )
    f.VoucherFactory.create_batch(2, preset=presets[1], customer=rich)


# --- Tests ----------------------------------------------------------------------------------


def test_the_data_holds_the_awkward_values(shop):
    """Guards the fixture and the parametrisation: every service and format is covered, and
    the values the round trips are meant to exercise are really there."""
    assert len({case.values[0] for case in CASES}) == 16
    assert len(CASES) == 65  # 16 services, four formats each, inquiry five
    values = [
        (service.name, value)
        for service in FLAT
        for row in expected_rows(service.name, column_names(service))
        for value in row
    ]
    texts = [value for _, value in values if isinstance(value, str)]
    assert any(value is None for _, value in values)
    for start in FORMULA_STARTS:
        assert any(text.startswith(start) for text in texts), start
    for piece in ("\r\n", '"', ",", "\n", "<", "&", ZOE, "🎉"):
        assert any(piece in text for text in texts), piece
    assert "" in texts
    decimals = {format(value, "f") for _, value in values if isinstance(value, Decimal)}
    assert {"0.10", "0.00", "1234567.89", "-12.50"} <= decimals  # "-12.50" is no formula
    assert any(isinstance(value, int) and value < 0 for _, value in values)
    assert {True, False} <= {value for _, value in values if isinstance(value, bool)}
    assert any(isinstance(value, dt.datetime) and value.microsecond for _, value in values)
    assert any(type(value) is dt.date for _, value in values)
    # An XML-forbidden character in each xml-capable service.
    for name in ("inquiry", "orderRow"):
        assert any(
            isinstance(value, str) and not all(map(xml_allowed, value))
            for service, value in values
            if service == name
        ), name
    # Every service has rows; adminUser has staff only, and non-staff users exist.
    for service in FLAT:
        assert expected_rows(service.name, column_names(service)), service.name
    assert get_user_model().objects.filter(is_staff=False).count() == 2
    assert {row[0] for row in expected_rows("adminUser", ["username"])} == {
        "boss",
        "zoe",
        "root",
        "gone",
    }


@pytest.mark.parametrize(("service", "export_format"), covering(CASES))
def test_export_round_trips_row_by_row(api, worker, shop, service, export_format):
    fields = column_names(site.get(service))
    rows = expected_rows(service, fields)
    data, status = run_export(api, worker, service, format=export_format)
    assert status["fields"] == fields
    assert status["processed"] == status["total"] == len(rows)
    assert status["file_size"] == len(data)
    assert_matches(data, service, export_format, fields, rows)


@pytest.mark.parametrize("export_format", ["csv", "json"])
def test_admin_user_export_never_holds_a_password(api, worker, shop, export_format):
    data, _ = run_export(api, worker, "adminUser", format=export_format)
    users = get_user_model().objects.all()
    assert users.filter(password__startswith="pbkdf2_sha256$").count() == 5
    assert b"pbkdf2" not in data
    assert b"md5$" not in data
    for user in users:
        assert user.password.encode() not in data
        assert user.password.split("$")[-1].encode() not in data  # not even the digest
    if export_format == "csv":
        columns, cells = parse_csv(data)
    else:
        objects = parse_json(data)
        columns = list(objects[0])
        cells = [list(obj.values()) for obj in objects]
    assert not any("password" in column for column in columns)
    usernames = {row[columns.index("username")] for row in cells}
    assert usernames == {"boss", "zoe", "root", "gone"}
    assert "shopper" not in usernames


@pytest.mark.parametrize(
    ("service", "export_format", "fields"),
    [
        ("product", "csv", ["price", "id", "name"]),
        ("inquiry", "xml", ["message", "customer_email", "id"]),
        ("orderRow", "xml", ["total", "note"]),
        ("customerAccount", "json", ["birth_date", "credit_balance"]),
    ],
)
def test_fields_subset_exports_exactly_those_columns(
    api, worker, shop, service, export_format, fields
):
    rows = expected_rows(service, fields)
    data, status = run_export(api, worker, service, format=export_format, fields=",".join(fields))
    assert status["fields"] == fields
    assert_matches(data, service, export_format, fields, rows)


@pytest.mark.parametrize(
    ("service", "export_format", "params", "orm_filter"),
    [
        ("orderRow", "xml", {"status": "paid"}, {"status": Order.Status.PAID}),
        ("orderRow", "json", {"status": "pending"}, {"status": Order.Status.PENDING}),
        ("product", "csv", {"is_active": "false"}, {"is_active": False}),
        ("inquiry", "csv", {"answered": "false"}, {"answered_at__isnull": True}),
    ],
)
def test_filter_exports_exactly_the_filtered_rows(
    api, worker, shop, service, export_format, params, orm_filter
):
    fields = column_names(site.get(service))
    rows = expected_rows(service, fields, **orm_filter)
    everything = expected_rows(service, fields)
    assert 0 < len(rows) < len(everything)  # the filter really selects
    data, status = run_export(api, worker, service, format=export_format, **params)
    assert status["total"] == len(rows)
    assert_matches(data, service, export_format, fields, rows)


#: One case of each format and of the services with the most awkward text.
SAME_BYTES_CASES = [
    ("inquiry", "csv"),
    ("inquiry", "json"),
    ("inquiry", "xml"),
    ("inquiry", "jsonl"),
    ("orderRow", "xml"),
    ("product", "csv"),
    ("customerAccount", "csv"),
]


@pytest.mark.parametrize(("service", "export_format"), SAME_BYTES_CASES)
def test_gzip_and_small_chunks_give_the_same_bytes(
    api, worker, shop, settings, service, export_format
):
    fields = column_names(site.get(service))
    plain, _ = run_export(api, worker, service, format=export_format)
    assert_matches(plain, service, export_format, fields, expected_rows(service, fields))

    packed, status = run_export(api, worker, service, format=export_format, compression="gzip")
    assert status["compression"] == "gzip"
    assert packed[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed) == plain

    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CHUNK_SIZE": 2}
    chunked, status = run_export(api, worker, service, format=export_format)
    assert status["total"] > 4  # three chunks or more
    assert chunked == plain
