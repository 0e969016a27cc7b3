"""Data safety: who may download what, where files are written, and what a file may hold.

* the download endpoint checks the same read permission as status, and never serves the
  file of another slot (another user's with ``SLOT_SCOPE = "user"``, another service's);
* every part and file of every service is stored under ``STORAGE_PREFIX/<service>/<id>/``,
  and the registry refuses service names that would not be safe in such a path;
* ``adminUser`` never writes a password hash, whatever is asked;
* CSV cells a spreadsheet would run are neutralised (and can be left alone by setting);
* characters XML 1.0 forbids never make a file invalid, and 1 MB texts and characters of all
  17 Unicode planes come back exactly from every format.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import posixpath
import re
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import FileSystemStorage
from django.core.management import call_command
from django.db import connection
from lxml import etree
from rest_framework.test import APIClient

from django_report_export.exceptions import ExportConfigurationError
from django_report_export.models import ReportExport, Status
from django_report_export.registry import ExportService, ServiceRegistry, site
from testproject.shop.factories import CategoryFactory, ProductFactory
from testproject.shop.models import Inquiry, Product

from .support.users import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def download(client: APIClient, service: str, **params) -> bytes:
    response = client.get(f"/api/report/{service}/download", params)
    assert response.status_code == 200, response.content
    data = b"".join(response.streaming_content)
    return gzip.decompress(data) if response["Content-Type"] == "application/gzip" else data


def export(client: APIClient, worker, service: str, query: str) -> dict:
    response = client.post(f"/api/report/{service}/start?{query}")
    assert response.status_code == 202, response.content
    worker()
    status = client.get(f"/api/report/{service}/status").json()
    assert status["status"] == Status.FINISHED, status
    return status


def client_of(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


# --- permissions and slots ----------------------------------------------------------------


def test_download_checks_the_read_permission_of_the_service(api, anon, worker):
    ProductFactory.create_batch(3)
    export_id = export(api, worker, "product", "format=csv")["id"]
    without = client_of(make_user("orders-only", "shop.view_order"))
    with_right = client_of(make_user("products", "shop.view_product"))
    for params in ({}, {"id": export_id}):
        response = anon.get("/api/report/product/download", params)
        assert response.status_code == 401
        assert response.json()["type"] == "not_authenticated"
        assert response["WWW-Authenticate"]
        response = without.get("/api/report/product/download", params)
        assert response.status_code == 401
        assert response.json()["type"] == "permission_denied"
        assert download(with_right, "product", **params) == download(api, "product", **params)


def test_download_by_id_never_serves_another_service_or_an_unfinished_export(api, worker):
    ProductFactory.create_batch(3)
    call_command("seed_shop", orders=5, products=3, seed=1, verbosity=0)
    order_export = export(api, worker, "orderRow", "format=json")["id"]
    unfinished = api.post("/api/report/product/start?format=csv").json()["id"]
    for export_id in (order_export, unfinished, "00000000-0000-0000-0000-000000000000"):
        response = api.get("/api/report/product/download", {"id": export_id})
        assert response.status_code == 404, export_id
        assert response.json()["type"] == "not_found"
    assert json.loads(download(api, "orderRow", id=order_export))


def test_user_slots_show_each_user_only_their_own_exports(settings, worker):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "SLOT_SCOPE": "user"}
    ProductFactory.create_batch(4, is_active=True)
    ProductFactory.create_batch(3, is_active=False)
    alice = client_of(make_user("alice", "shop.view_product"))
    bob = client_of(make_user("bob", "shop.view_product"))
    alice_id = export(alice, worker, "product", "format=csv&is_active=true")["id"]
    bob_id = export(bob, worker, "product", "format=json&is_active=false")["id"]

    assert alice.get("/api/report/product/status").json()["id"] == alice_id
    assert bob.get("/api/report/product/status").json()["id"] == bob_id
    assert [e["id"] for e in alice.get("/api/report/product/history").json()["results"]] == [
        alice_id
    ]
    assert [e["id"] for e in bob.get("/api/report/product/history").json()["results"]] == [bob_id]
    assert len(list(csv.reader(io.StringIO(download(alice, "product").decode())))) == 1 + 4
    assert len(json.loads(download(bob, "product"))) == 3
    for client, other in ((alice, bob_id), (bob, alice_id)):
        response = client.get("/api/report/product/download", {"id": other})
        assert response.status_code == 404
        assert response.json()["type"] == "not_found"

    # Alice's operations never touch Bob's slot.
    assert alice.post("/api/report/product/start?format=csv").status_code == 202
    assert alice.delete("/api/report/product/cancel").status_code == 200
    assert bob.post("/api/report/product/pause").status_code == 404
    assert bob.get("/api/report/product/status").json()["status"] == Status.FINISHED
    assert ReportExport.objects.get(pk=bob_id).owner.username == "bob"


# --- storage names ------------------------------------------------------------------------


class RecordingStorage(FileSystemStorage):
    """The file system storage, noting the name of everything saved, opened or deleted."""

    names: list[tuple[str, str]] = []

    def _save(self, name, content):
        stored = super()._save(name, content)
        self.names.append(("save", stored))
        return stored

    def _open(self, name, mode="rb"):
        self.names.append(("open", name))
        return super()._open(name, mode)

    def delete(self, name):
        self.names.append(("delete", name))
        return super().delete(name)


@pytest.mark.parametrize("prefix", ["report_export", "tenant-1/exports"])
def test_every_part_and_file_of_every_service_stays_under_its_folder(
    settings, api, worker, media_root, prefix
):
    settings.STORAGES = {
        **settings.STORAGES,
        "recording": {
            "BACKEND": "tests.test_data_safety.RecordingStorage",
            "OPTIONS": {"location": str(media_root)},
        },
    }
    settings.REPORT_EXPORT = {
        **settings.REPORT_EXPORT,
        "STORAGE": "recording",
        "STORAGE_PREFIX": prefix,
        "CHUNK_SIZE": 2,
        "CHECKPOINT_INTERVAL": 0,
    }
    RecordingStorage.names = []
    call_command("seed_shop", orders=10, products=5, seed=2, verbosity=0)
    for number, service in enumerate(site):
        compression = "&compression=gzip" if number % 2 else ""
        export(api, worker, service.name, f"format={service.formats[-1]}{compression}")

    exports = {str(e.pk): e for e in ReportExport.objects.all()}
    assert len(exports) == len(site.names())
    saved = [name for action, name in RecordingStorage.names if action == "save"]
    assert any("/parts/" in name for name in saved)
    root = Path(media_root).resolve()
    for action, name in RecordingStorage.names:
        assert posixpath.normpath(name) == name, name
        assert not name.startswith("/"), name
        service, export_id = name[len(prefix) + 1 :].split("/")[:2]
        assert name.startswith(f"{prefix}/{service}/{export_id}/"), name
        assert exports[export_id].service == service, (action, name)
        folder = root / prefix / service / export_id
        assert (root / name).resolve().is_relative_to(folder), name
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted(e.file_name for e in exports.values())
    actions = Counter(action for action, _ in RecordingStorage.names)
    print(f"\nstorage names under {prefix!r}: {dict(actions)}, {len(exports)} exports")


SAFE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}")

#: Names the registry refuses today.
REFUSED = ["", "/", "a/b", "../etc"]
#: Names unsafe as a path segment, a URL segment or a slot key that the registry lets through.
UNSAFE = [
    "..",
    ".",
    "a\\b",
    "..\\windows",
    "a\x00b",
    "a\nb",
    "a b",
    "a?b",
    "a#b",
    "a%2Fb",
    "product:user:1",
    "x" * 101,
]


class Products(ExportService):
    model = Product
    fields = ("id",)


def test_the_demo_service_names_are_safe():
    assert all(SAFE_NAME.fullmatch(name) for name in site.names())


@pytest.mark.parametrize("name", ["orderLines", "order_lines", "order-lines", "Orders2"])
def test_safe_service_names_are_registered(name):
    ServiceRegistry().register(name, Products)


@pytest.mark.parametrize("name", REFUSED)
def test_service_names_with_a_slash_are_refused(name):
    with pytest.raises(ExportConfigurationError):
        ServiceRegistry().register(name, Products)


@pytest.mark.parametrize("name", UNSAFE, ids=repr)
def test_service_names_unsafe_in_a_path_are_refused(name):
    with pytest.raises(ExportConfigurationError):
        ServiceRegistry().register(name, Products)


# --- what a file may hold ---------------------------------------------------------------

HASH_MARKERS = (b"pbkdf2", b"argon2", b"bcrypt", b"scrypt", b"sha1$", b"md5$", b"password")


def test_admin_user_export_never_holds_a_password_hash(api, worker):
    users = [
        make_user(f"staff{number}", is_staff=True, first_name="=cmd", last_name="pbkdf-ish")
        for number in range(3)
    ]
    hashes = [get_user_model().objects.get(pk=user.pk).password.encode() for user in users]
    assert all(hashes)
    everything = []
    for query in (
        "format=json",
        "format=csv",
        "format=csv&compression=gzip",
        "format=json&fields=id",
    ):
        export(api, worker, "adminUser", query)
        everything.append(download(api, "adminUser"))
    for data in everything:
        for marker in (*HASH_MARKERS, *hashes):
            assert marker not in data.lower(), marker
    assert len(json.loads(everything[0])) == 3 + 1  # and the admin running the tests
    for query, parameter in [
        ("format=json&fields=id,password", "fields"),
        ("format=json&password=x", "password"),
        ("format=json&password__startswith=pbkdf2", "password__startswith"),
    ]:
        response = api.post(f"/api/report/adminUser/start?{query}")
        assert response.status_code == 400
        assert parameter in response.json()["errors"]
    # The search filter is no oracle on the hash.
    export(api, worker, "adminUser", "format=json&search=pbkdf2")
    assert json.loads(download(api, "adminUser")) == []


#: Texts a spreadsheet may run as a formula, and how the guard writes them: a ``'`` wherever a
#: spreadsheet may start reading a cell (the text's start, after a comma, semicolon, tab, bar or
#: line end), in front of any whitespace before the formula.
FORMULAS = {
    "=1+2": "'=1+2",
    "+SUM(A1:A2)": "'+SUM(A1:A2)",
    "-2+3": "'-2+3",
    "@cmd": "'@cmd",
    "\tTAB": "'\tTAB",
    "\rCR": "'\rCR",
    '=HYPERLINK("http://x")': '\'=HYPERLINK("http://x")',
    " =leading space": "' =leading space",
    "\u00a0\u3000=1+1": "'\u00a0\u3000=1+1",
    "\uff1d1+1": "'\uff1d1+1",
    "\uff0bSUM(A1)": "'\uff0bSUM(A1)",
    "\uff0d1": "'\uff0d1",
    "\uff20cmd": "'\uff20cmd",
    "x;=1+1": "x;'=1+1",
    "Tel. 030 1234; +49 171 1234": "Tel. 030 1234;' +49 171 1234",
    "a,=1+1": "a,'=1+1",
    "a\t=1+1": "a\t'=1+1",
    "a|=1+1": "a|'=1+1",
    "first line\n=1+1": "first line\n'=1+1",
    ";;=1": ";;'=1",
}
HARMLESS = [
    "plain",
    "a=b",
    "'quoted",
    "x;y",
    "a - b",
    "a;b=c",
    "e-mail: a@example.com",
    "one\r\n\r\n\tindented",
]


def csv_rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def cells_as_split_at(data: bytes, delimiter: str) -> list[str]:
    """Every cell of the file as a spreadsheet assuming ``delimiter`` reads it: quotes count
    only at the start of a cell, an unquoted line end ends the record."""
    text = data.decode("utf-8")
    return [
        cell
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        for cell in row
    ]


#: A cell a spreadsheet may run: a formula sign first, or after whitespace it trims.
STARTS_LIKE_FORMULA = re.compile("\\s*[=+\\-@\uff1d\uff0b\uff0d\uff20]")


def formula_cells(cells: list[str]) -> list[str]:
    """The cells that start like a formula, numbers (``-5``) aside."""
    return [cell for cell in cells if STARTS_LIKE_FORMULA.match(cell) and not is_number(cell)]


def is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


@pytest.mark.parametrize("guard", [True, False])
def test_csv_formula_injection_is_neutralised_by_default_and_configurable(
    settings, api, worker, guard
):
    if not guard:
        settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CSV_FORMULA_GUARD": False}
    category = CategoryFactory(name="=category")
    for text in [*FORMULAS, *HARMLESS]:
        ProductFactory(name=text, description=text, category=category, stock=-5)
    ProductFactory(name="negative", price=Decimal("-1.50"), category=category, stock=-5)
    export(
        api, worker, "product", "format=csv&fields=id,name,description,category_name,stock,price"
    )
    data = download(api, "product")
    rows = csv_rows(data)
    assert len(rows) == len(FORMULAS) + len(HARMLESS) + 1
    for row in rows:
        stored = Product.objects.get(pk=row["id"])
        for column, value in (("name", stored.name), ("description", stored.description)):
            expected = FORMULAS.get(value, value) if guard else value
            assert row[column] == expected, (column, value)
        assert row["category_name"] == ("'=category" if guard else "=category")
        assert row["stock"] == "-5"  # numbers are never changed
        assert row["price"] == str(stored.price)
    # Nor does a spreadsheet that splits the file at semicolons (German Excel), tabs or bars
    # find a formula in it; without the guard each of them finds some.
    for delimiter in (",", ";", "\t", "|"):
        found = formula_cells(cells_as_split_at(data, delimiter))
        assert (found == []) is guard, (delimiter, found)


#: Characters XML 1.0 does not allow in a document (NUL only where the database stores it).
XML_FORBIDDEN = [chr(c) for c in (*range(0x1, 0x9), 0xB, 0xC, *range(0xE, 0x20))] + [
    "\ufffe",
    "\uffff",
]
XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

#: One character of each of the 17 planes (planes 4 to 13 hold no assigned character yet; their
#: code points are valid all the same), and characters that trip up parsers.
EVERY_PLANE = (
    "é€\u2028\u2029\ufeff\u00a0"  # plane 0
    + "\U0001f600\U0001d11e"  # 1
    + "\U00020000\U0002a6d6"  # 2
    + "\U00030000"  # 3
    + "".join(chr(plane << 16 | 0x0100) for plane in range(4, 14))
    + "\U000e0001\U000f0000\U0010fffd"  # 14, 15, 16
    + "<>&\"' ]]> \r\n\t\\"
)


def parse(data: bytes, export_format: str) -> dict[str, dict]:
    if export_format == "json":
        records = json.loads(data.decode("utf-8"))
    elif export_format == "csv":
        records = csv_rows(data)
    else:
        root = etree.fromstring(data, etree.XMLParser(huge_tree=False, resolve_entities=False))
        records = [{child.tag: child.text or "" for child in record} for record in root]
    return {str(record["id"]): record for record in records}


@pytest.fixture
def awkward_inquiries():
    forbidden = "".join(XML_FORBIDDEN)
    if connection.vendor == "sqlite":
        forbidden += "\x00"  # PostgreSQL cannot store NUL in text
    long_text = (EVERY_PLANE * (1_000_000 // len(EVERY_PLANE) + 1))[:1_000_000]
    rows = [
        ("every plane " + EVERY_PLANE, EVERY_PLANE),
        (f"forbidden {forbidden} end", f"a{forbidden}b\x7f\x80\x9f"),
        ("a megabyte", long_text),
    ]
    return [
        Inquiry.objects.create(email="x@example.com", subject=subject, message=message)
        for subject, message in rows
    ]


@pytest.fixture
def big_csv_fields():
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    yield
    csv.field_size_limit(limit)


@pytest.mark.parametrize(
    "query", ["format=json", "format=csv", "format=xml", "format=xml&compression=gzip"]
)
def test_any_text_round_trips_and_xml_stays_well_formed(
    settings, api, worker, awkward_inquiries, big_csv_fields, query
):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "CSV_FORMULA_GUARD": False}
    export(api, worker, "inquiry", f"{query}&fields=id,subject,message")
    records = parse(download(api, "inquiry"), query.split("&")[0].split("=")[1])
    assert len(records) == len(awkward_inquiries)
    for inquiry in awkward_inquiries:
        stored = Inquiry.objects.get(pk=inquiry.pk)
        assert len(stored.message) == len(inquiry.message)
        for column in ("subject", "message"):
            expected = getattr(stored, column)
            if "xml" in query:
                # Documented: a character XML forbids is written as U+FFFD.
                expected = XML_CHAR.sub("\ufffd", expected)
            assert records[str(inquiry.pk)][column] == expected, column
