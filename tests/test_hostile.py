"""Hostile input: whatever a client sends, the API answers a 4xx with the JSON error body
(``{"detail": ..., "type": ...}``) or does what the contract says, and never a 500.

The first part sends crafted requests through Django's test client (raw ``PATH_INFO`` and
``QUERY_STRING`` where a URL cannot carry the bytes); the last part (slow) runs schemathesis
against a live gunicorn over every operation of the OpenAPI schema, with and without
credentials, and sends raw bytes over a socket.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import sys
import time

import pytest
from django.db import connection
from rest_framework.test import APIClient

from django_report_export.conf import export_settings
from django_report_export.models import ReportExport, Status
from testproject.shop.factories import ProductFactory

from .support.servers import LiveServer, basic_auth
from .support.users import make_user

pytestmark = pytest.mark.django_db(transaction=True)

SERVICE_ENDPOINTS = [
    ("get", "status"),
    ("post", "start"),
    ("post", "pause"),
    ("post", "resume"),
    ("delete", "cancel"),
    ("get", "download"),
    ("get", "history"),
]


def json_error(response, *codes: int) -> dict:
    """The JSON error body of ``response``, which must have one of ``codes``."""
    content = response.content[:300]
    assert response.status_code in codes, (response.status_code, content)
    assert response["Content-Type"] == "application/json", (response["Content-Type"], content)
    body = json.loads(response.content)
    assert isinstance(body["detail"], str), body
    assert isinstance(body["type"], str), body
    assert body["detail"]
    assert body["type"]
    return body


def raw_request(client: APIClient, method: str, path: str, query: str = "", **extra):
    """``path`` and ``query`` reach the view as given: a latin-1 ``str`` stands for raw bytes."""
    return client.generic(method.upper(), "/", PATH_INFO=path, QUERY_STRING=query, **extra)


def call(client: APIClient, method: str, url: str):
    if url.endswith("/start"):
        url += "?format=csv"
    return getattr(client, method)(url)


# --- service names ------------------------------------------------------------------------

#: Service names with path tricks, as written in the URL; each reaches the view (one path
#: segment once decoded) and must be an unknown service, whatever it decodes to.
TRICKY_NAMES = [
    "..",
    "%2e%2e",
    "%2E%2E",
    ".",
    "...",
    "..%5c..%5cwindows",
    "%00",
    "pr%00oduct",
    "product%00",
    "pr%C3%B6duct",
    "%F0%9F%98%80",
    "%F0%90%80%80%F3%A0%80%81%F4%8F%BF%BD",
    "%FF%FE",
    "%C0%AE%C0%AE",
    "%ED%A0%80",
    "a" * 10_000,
    "%E6%97%A5" * 2_000,
    "product%20",
    "%20product",
    "PRODUCT",
    "product.json",
    "product;v=1",
    "product%3Fformat%3Dcsv",
    "product%23top",
    "%3Cscript%3Ealert(1)%3C%5Cscript%3E",
    "'%20OR%201=1--",
    "*",
    "product*",
    "report_export:slot:product",
    "%25%32%65%25%32%65",
]

#: Names holding a "/" once decoded, and other paths next to the endpoints: no URL pattern
#: of the API matches them, so Django's own 404 page answers.
UNROUTED_PATHS = [
    "/api/report/..%2F..%2Fetc%2Fpasswd/status",
    "/api/report/%2F/status",
    "/api/report/product%2F../status",
    "/api/report/product%2Fstatus/status",
    "/api/report//status",
    "/api/report/product/status/",
    "/api/report/product/../product/status",
    "/api/report/product/statusx",
]


@pytest.mark.parametrize(("method", "action"), SERVICE_ENDPOINTS)
def test_service_names_with_path_tricks_are_400_unknown_service(api, method, action):
    for name in TRICKY_NAMES:
        response = call(api, method, f"/api/report/{name}/{action}")
        assert json_error(response, 400)["type"] == "unknown_service", name
    assert not ReportExport.objects.exists()


def test_non_utf8_bytes_and_nul_in_the_raw_path_are_400_unknown_service(api):
    for raw in ["\xff\xfe", "pr\x00oduct", "\xc0\xae\xc0\xae", "product\xe9", "\x00" * 100]:
        response = raw_request(api, "get", f"/api/report/{raw}/status")
        assert json_error(response, 400)["type"] == "unknown_service", repr(raw)


def test_tricky_service_names_without_credentials_are_401(anon):
    for name in ["..", "%FF%FE", "a" * 10_000, "pr%00oduct"]:
        response = anon.get(f"/api/report/{name}/status")
        assert json_error(response, 401)["type"] == "not_authenticated"


def test_unrouted_paths_under_the_api_are_json_404(api):
    for path in UNROUTED_PATHS:
        json_error(api.get(path), 400, 404)


# --- query strings ------------------------------------------------------------------------


def test_enormous_query_strings(api):
    huge = "x" * 100_000
    body = json_error(api.post(f"/api/report/product/start?format=csv&{huge}=1"), 400)
    assert body["type"] == "invalid"
    assert huge in body["errors"]
    body = json_error(api.post(f"/api/report/product/start?format={huge}"), 400)
    assert list(body["errors"]) == ["format"]
    body = json_error(api.post(f"/api/report/product/start?format=csv&fields={huge}"), 400)
    assert list(body["errors"]) == ["fields"]
    # Endpoints without parameters ignore them, however large.
    assert api.get(f"/api/report/product/status?{huge}={huge}").status_code == 200
    assert not ReportExport.objects.exists()


#: Raw query strings of a start of ``product`` and the parameter the 400 must name (None: a
#: valid start, 202).
MALFORMED_QUERIES = [
    ("format", "format"),
    ("=csv", "format"),
    ("&&&=&=&", "format"),
    ("%", "format"),
    ("%%%", "format"),
    ("format=%", "format"),
    ("format=%zz", "format"),
    ("format=csv%00", "format"),
    ("format=%FF%FE", "format"),
    ("format=\xff\xfe", "format"),
    ("format[]=csv", "format[]"),
    ("format=csv;is_active=true", "format"),
    ("format=csv&%zz=1", "%zz"),
    ("format=csv&\xff=1", "\xff"),  # not UTF-8: Django decodes the query as latin-1
    ("format=csv&is_active=tr%00ue", "is_active"),
    ("format=csv&fields=,,,", "fields"),
    ("format=csv&fields=id,,sku", "fields"),  # an empty item: outside the schema's enum
    ("format=csv&fields=id,sku,", "fields"),
    ("format=csv&fields=,id", "fields"),
    ("format=csv&fields=id,%00", "fields"),
    ("format=csv&fields=id&fields=sku", "fields"),
    ("format=csv&compression=%00", "compression"),
    ("format=csv&format=json", "format"),
    ("format=csv&search=%00", "search"),
    ("format=csv&&&", None),
    ("format=csv&search=\xff\xfe", None),
    ("format=+csv+", None),
    # An empty filter value is no filter (what an HTML form sends for an unused field).
    ("format=csv&is_active", None),
    ("format=csv&is_active=&search=", None),
    ("format=csv&fields=", None),  # all fields
    ("format=csv&fields=id,+sku+", None),
]


@pytest.mark.parametrize(("query", "parameter"), MALFORMED_QUERIES)
def test_malformed_query_strings_are_400_naming_the_parameter(api, query, parameter):
    response = raw_request(api, "post", "/api/report/product/start", query)
    if parameter is None:
        assert response.status_code == 202, response.content
        return
    body = json_error(response, 400)
    assert body["type"] == "invalid"
    assert parameter in body["errors"], body


#: Filters of the wrong type, one per kind of filter of the demo shop.
WRONG_TYPES = [
    ("product", "category=abc"),
    ("product", "category=1.5"),
    ("product", "category=0x10"),
    ("product", "category=true"),
    ("product", "stock_below=1e3"),
    ("product", "is_active=2"),
    ("product", "is_active=maybe"),
    ("product", "is_active=%00"),
    ("product", "price_min=abc"),
    ("product", "price_min=NaN"),
    ("product", "price_min=-Infinity"),
    ("product", "price_min=1e400"),
    ("product", "price_min=1,5"),
    ("product", "created_after=2024-13-45"),
    ("product", "created_after=2024-02-30"),
    ("product", "created_after=yesterday"),
    ("product", "created_after=2024-01-01T25:00:00"),
    ("product", "created_after=2024-01-01T00:00:00%2B99:00"),
    ("order", "status=lost"),
    ("order", "currency=EURO"),
    ("order", "total_min=12,50"),
    ("inquiry", "customer=me"),
    ("inquiry", "answered=%F0%9F%98%80"),
    ("seoViews", "date_from=2024/01/01"),
    ("seoViews", "views_min=-"),
    ("voucher", "valid_on=2024-01-01T10:00:00"),
    ("productRating", "rating_min=6"),
    ("productRating", "rating_max=0"),
    ("dataFeed", "channel=GOOGLE_SHOPPING"),
]


@pytest.mark.parametrize(("service", "query"), WRONG_TYPES)
def test_filters_of_the_wrong_type_are_400_naming_the_filter(api, service, query):
    export_format = "json"
    response = api.post(f"/api/report/{service}/start?format={export_format}&{query}")
    body = json_error(response, 400)
    assert body["type"] == "invalid"
    assert list(body["errors"]) == [query.split("=")[0]], body
    assert not ReportExport.objects.exists()


#: Values every filter form accepts that some database cannot compare with: out of the
#: 64-bit range, datetimes that overflow in UTC, a LIKE pattern longer than SQLite allows.
#: For each query, where a known bug makes the export end in Error after a 202: on SQLite, or
#: on PostgreSQL with the fast path (``readers/postgres.py``) on.
OUT_OF_RANGE = {
    "category=100000000000000000000000": {"sqlite"},
    "stock_below=-100000000000000000000": {"postgresql fast path"},
    "price_min=1e49": set(),
    "created_after=0001-01-01T00:00:00": {"sqlite"},
    "created_after=9999-12-31T23:59:59-14:00": {"sqlite"},
    "created_before=0001-01-01": set(),
    "search=" + "a" * 100_000: {"sqlite"},
}


@pytest.mark.parametrize("query", list(OUT_OF_RANGE), ids=lambda query: query[:40])
def test_filter_values_out_of_the_database_range_never_end_in_error(api, worker, request, query):
    where = connection.vendor
    if where == "postgresql" and export_settings.FAST_PATH:
        where = "postgresql fast path"
    ProductFactory.create_batch(3)
    response = api.post(f"/api/report/product/start?format=csv&{query}")
    if response.status_code == 400:
        assert query.split("=")[0] in json_error(response, 400)["errors"]
        return
    assert response.status_code == 202, response.content[:300]
    worker()
    status = api.get("/api/report/product/status").json()
    assert status["status"] == Status.FINISHED, status["error"]


def test_a_single_valued_filter_given_twice_is_400(api):
    response = api.post("/api/report/product/start?format=csv&is_active=true&is_active=false")
    assert json_error(response, 400)["errors"].keys() == {"is_active"}


def test_huge_repeated_parameters_are_400(api):
    for name in ("format", "fields", "compression"):
        query = "format=csv&" + "&".join([f"{name}=csv"] * 900)
        body = json_error(raw_request(api, "post", "/api/report/product/start", query), 400)
        assert name in body["errors"]
    assert not ReportExport.objects.exists()


def test_more_parameters_than_django_allows_are_a_json_400(api):
    many = "&".join(f"p{number}=1" for number in range(1200))
    json_error(raw_request(api, "post", "/api/report/product/start", f"format=csv&{many}"), 400)
    json_error(raw_request(api, "get", "/api/report/product/history", many), 400)
    form = api.generic(
        "POST",
        "/api/report/product/start",
        f"format=csv&{many}",
        content_type="application/x-www-form-urlencoded",
    )
    json_error(form, 400)
    body = json.dumps({"format": "csv", "search": "a" * 3_000_000})
    json_error(api.generic("POST", "/api/report/product/start", body, "application/json"), 400)


# --- request bodies -----------------------------------------------------------------------

#: JSON bodies of a start that are not an object of parameters.
NOT_OBJECTS = ["[1, 2]", '"csv"', "42", "null", "true", "[]", '[{"format": "csv"}]']
BROKEN_JSON = ["{", "", "{'format': 'csv'}", '{"format": "csv",}', "\xff\xfe{}", "NaN"]


@pytest.mark.parametrize("body", NOT_OBJECTS + BROKEN_JSON)
def test_json_bodies_that_are_not_objects_are_400(api, body):
    response = api.generic(
        "POST",
        "/api/report/product/start",
        body.encode("latin-1"),
        content_type="application/json",
    )
    if body == "":
        # An empty body is no body: the query string (without format) decides.
        assert json_error(response, 400)["errors"].keys() == {"format"}
        return
    assert json_error(response, 400)["type"] == "parse_error"
    assert not ReportExport.objects.exists()


#: JSON objects whose values are not what a parameter can be.
ODD_VALUES = [
    ({"format": {"csv": 1}}, "format"),
    ({"format": None}, "format"),
    ({"format": ["csv", "json"]}, "format"),
    ({"format": "csv", "fields": ["id", {"x": 1}]}, "fields"),
    ({"format": "csv", "category": {"gt": 1}}, "category"),
    ({"format": "csv", "is_active": 2}, "is_active"),
    ('{"format": "csv", "price_min": 1e400}', "price_min"),
    ('{"format": "csv", "price_min": NaN}', None),
    ({"format": "csv", "nope": 1}, "nope"),
]


@pytest.mark.parametrize(("body", "parameter"), ODD_VALUES)
def test_json_values_of_the_wrong_type_are_400_naming_the_parameter(api, body, parameter):
    if isinstance(body, dict):
        body = json.dumps(body)
    response = api.generic("POST", "/api/report/product/start", body, "application/json")
    if parameter is None:  # not JSON at all
        assert json_error(response, 400)["type"] == "parse_error"
        return
    assert parameter in json_error(response, 400)["errors"]


def test_bodies_of_other_types_are_4xx_json(api):
    for content_type, body in [
        ("application/xml", "<format>csv</format>"),
        ("text/plain", "format=csv"),
        ("application/octet-stream", "\x00\xff"),
    ]:
        response = api.generic("POST", "/api/report/product/start", body, content_type)
        assert json_error(response, 415)["type"] == "unsupported_media_type"
    response = api.generic("POST", "/api/report/product/start", "garbage", "multipart/form-data")
    assert json_error(response, 400)["type"] == "parse_error"
    assert not ReportExport.objects.exists()


def test_a_deeply_nested_json_body_is_400(api):
    body = "[" * 100_000 + "]" * 100_000
    response = api.generic("POST", "/api/report/product/start", body, "application/json")
    assert json_error(response, 400)["type"] == "parse_error"


# --- credentials --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        b"boss:wrong",
        b"boss:p\x00w",
        b"\xff\xfe:pw",
        b"nocolon",
        b"a:" + b"x" * 100_000,
        b"a\x00b:pw",
    ],
    ids=repr,
)
def test_malformed_basic_credentials_are_401(anon, request, credentials):
    make_user("boss")
    anon.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(credentials).decode())
    for method, url in [("get", "/api/report/"), ("post", "/api/report/product/start")]:
        response = getattr(anon, method)(url)
        assert json_error(response, 401)["type"] == "not_authenticated"
        assert response["WWW-Authenticate"].startswith("Basic")


# --- other parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "id=../../etc/passwd",
        "id=%00",
        "id=1",
        "id=" + "f" * 100_000,
        "id=\xff",
        "id=",
        "id=null",
        "id=" + "0" * 32,  # a UUID, but not as the API writes (and the schema describes) one
        "id={00000000-0000-0000-0000-000000000000}",
        "id=00000000-0000-0000-0000-000000000000&id=00000000-0000-0000-0000-000000000000",
    ],
)
def test_download_id_that_is_no_export_id_is_400_naming_it(api, query):
    response = raw_request(api, "get", "/api/report/product/download", query)
    body = json_error(response, 400)
    assert body["type"] == "invalid"
    assert body["errors"].keys() == {"id"}
    assert "id" in body["detail"]


def test_download_id_of_no_export_is_404(api):
    query = "id=00000000-0000-0000-0000-000000000000"
    assert json_error(raw_request(api, "get", "/api/report/product/download", query), 404)


@pytest.mark.parametrize(
    "query",
    ["page=abc", "page=0", "page=-1", "page=99999999999999999999", "page=%00", "page=\xff"],
)
def test_history_page_that_does_not_exist_is_404(api, query):
    assert json_error(raw_request(api, "get", "/api/report/product/history", query), 404)


@pytest.mark.parametrize(
    "query",
    [
        "page_size=null",
        "page_size=",
        "page_size=abc",
        "page_size=0",
        "page_size=-1",
        "page_size=1.5",
        "page_size=%00",
        "page_size=5&page_size=6",
    ],
)
def test_history_page_size_that_is_no_positive_integer_is_400_naming_it(api, query):
    body = json_error(raw_request(api, "get", "/api/report/product/history", query), 400)
    assert body["type"] == "invalid"
    assert body["errors"].keys() == {"page_size"}


@pytest.mark.parametrize("query", ["page_size=1", "page_size=200", "page_size=10000000000000"])
def test_history_page_size_above_the_maximum_is_served_as_the_maximum(api, query):
    response = raw_request(api, "get", "/api/report/product/history", query)
    assert response.status_code == 200
    assert response.json()["results"] == []


# --- live server (slow) -------------------------------------------------------------------

#: Every check schemathesis has, the conformance of negative data (outside the schema: refused
#: with a 4xx) and of positive data (inside it: accepted) among them.
CHECKS = "all"


@pytest.fixture
def gunicorn_server(settings, tmp_path, worker):
    """gunicorn (2 workers) with two users and one finished export of ``product``."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    make_user("boss", is_staff=True, is_superuser=True)
    make_user("clerk", "shop.view_product")
    ProductFactory.create_batch(5)
    client = APIClient()
    client.force_login(make_user("setup", "shop.view_product"))
    assert client.post("/api/report/product/start?format=csv").status_code == 202
    worker()
    with LiveServer(tmp_path / "gunicorn.log", workers=2) as server:
        yield server
        log = server.output()
    assert "Traceback" not in log, log[-5000:]


def schemathesis(server: LiveServer, label: str, seconds: int, *options: str) -> None:
    """Run schemathesis over every operation for at most ``seconds``; fail on any finding."""
    began = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{server.url}/api/schema/",
            "--checks",
            CHECKS,
            "--mode",
            "all",
            "--max-examples",
            "25",
            "--max-time",
            str(seconds),
            "--seed",
            "20261127",
            "--workers",
            "2",
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
            "--suppress-health-check",
            "all",
            "--no-color",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    summary = [line for line in output.splitlines() if "generated" in line or "passed" in line]
    print(f"\nschemathesis, {label}, {time.monotonic() - began:.0f} s:", *summary, sep="\n  ")


@pytest.mark.slow
def test_schemathesis_finds_no_500_and_nothing_outside_the_schema(gunicorn_server):
    # The schema is the same on every database: SQLite's suite gives it the longest search.
    seconds = 35 if connection.vendor == "sqlite" else 15
    schemathesis(gunicorn_server, "superuser", seconds, "--auth", "boss:pw")
    schemathesis(gunicorn_server, "product reader", 8, "--auth", "clerk:pw")
    # Without credentials schemathesis also makes up Authorization headers; on PostgreSQL one
    # with NUL in the user name is a known 500 (test_malformed_basic_credentials_are_401).
    known_bug = ["--generation-with-security-parameters", "false"]
    schemathesis(
        gunicorn_server, "anonymous", 8, *(known_bug if connection.vendor == "postgresql" else [])
    )


def raw_http(server: LiveServer, request_line: bytes, headers: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as conn:
        # gunicorn may answer (414) and close before it has read an overlong request line.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(request_line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers)
            conn.sendall(b"\r\n")
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := conn.recv(65536):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head + b"\r\n\r\n" + body


#: Request lines sent as raw bytes, the codes allowed and who answers: gunicorn itself (it
#: refuses bytes outside ASCII and NUL in the request line, and lines over 4,094 bytes),
#: the API (the JSON error body), or Django's 404 page for a path no route matches.
RAW_REQUESTS = [
    (b"GET /api/report/\xff\xfe/status", 400, "gunicorn"),
    (b"GET /api/report/pr\x00oduct/status", 400, "gunicorn"),
    (b"POST /api/report/product/start?format=csv&search=\xff\xfe", 400, "gunicorn"),
    (b"POST /api/report/product/start?format=csv&search=a\x00b", 400, "gunicorn"),
    (b"GET /api/report/product/history?page=\xff", 400, "gunicorn"),
    (b"POST /api/report/product/start?" + b"x" * 100_000 + b"=1", 414, "gunicorn"),
    (b"GET /api/report/" + b"a" * 5_000 + b"/status", 414, "gunicorn"),
    (b"GET /api/report/%FF%FE/status", 400, "api"),
    (b"GET /api/report/pr%00oduct/status", 400, "api"),
    (b"GET /api/report/%C0%AE%C0%AE/status", 400, "api"),
    (b"POST /api/report/product/start?format=%FF", 400, "api"),
    (b"POST /api/report/product/start?format=csv&search=%00", 400, "api"),
    (b"GET /api/report/product/history?page=%FF", 404, "api"),
    (b"GET /api/report/product/download?id=%FF%00", 400, "api"),
    (b"GET /api/report/../../../etc/passwd", 404, "django"),
    (b"GET /api/report/..%2f..%2fetc/status", 404, "django"),
]


@pytest.mark.slow
def test_raw_bytes_over_a_socket_never_get_a_5xx(gunicorn_server):
    auth = f"Authorization: {basic_auth('boss', 'pw')}\r\n".encode()
    for request_line, expected, answered_by in RAW_REQUESTS:
        code, answer = raw_http(
            gunicorn_server, request_line + b" HTTP/1.1", auth + b"Content-Length: 0\r\n"
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        assert code == expected, (request_line[:80], answer[:500])
        if answered_by == "api":
            assert b"Content-Type: application/json" in head
            assert {"detail", "type"} <= set(json.loads(body)), body
