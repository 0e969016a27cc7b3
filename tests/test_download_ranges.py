"""The download's ``ETag`` (the file's SHA-256), ``If-None-Match`` and ``Range`` requests, on
the API's endpoint and the admin's link, with a real Redis and burst RQ workers."""

from __future__ import annotations

import hashlib

import pytest

from django_report_export.models import ReportExport
from django_report_export.ranges import Unsatisfiable, byte_range
from testproject.shop.factories import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/report/product/download"


@pytest.fixture
def finished(api, worker) -> bytes:
    """The whole file of a finished export of 200 products (several KB)."""
    ProductFactory.create_batch(200)
    api.post("/api/report/product/start?format=csv")
    worker()
    response = api.get(URL)
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def body(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def test_etag_is_the_sha256_of_the_file_and_304_when_it_matches(api, finished):
    digest = hashlib.sha256(finished).hexdigest()
    response = api.get(URL)
    assert response["ETag"] == f'"{digest}"'
    assert response["Accept-Ranges"] == "bytes"
    assert api.get("/api/report/product/status").json()["sha256"] == digest
    again = api.get(URL, HTTP_IF_NONE_MATCH=f'"{digest}"')
    assert again.status_code == 304
    assert again["ETag"] == f'"{digest}"'
    assert body(again) == b""
    other = api.get(URL, HTTP_IF_NONE_MATCH='"0000"')
    assert other.status_code == 200
    assert body(other) == finished


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, None),
        ("bytes=-100", -100, None),
        ("bytes=10-10", 10, 10),
        ("bytes=1000-999999", 1000, None),
    ],
)
def test_a_range_is_206_with_its_bytes(api, finished, header, first, last):
    response = api.get(URL, HTTP_RANGE=header)
    assert response.status_code == 206
    expected = finished[first:] if last is None else finished[first : last + 1]
    assert body(response) == expected
    start = first if first >= 0 else len(finished) + first
    end = start + len(expected) - 1
    assert response["Content-Range"] == f"bytes {start}-{end}/{len(finished)}"
    assert response["Content-Length"] == str(len(expected))
    assert response["ETag"] == f'"{hashlib.sha256(finished).hexdigest()}"'
    assert "attachment" in response["Content-Disposition"]


def test_ranges_put_together_are_the_file(api, finished):
    size = len(finished)
    pieces = [f"bytes=0-{size // 3}", f"bytes={size // 3 + 1}-{size - 101}", "bytes=-100"]
    assert b"".join(body(api.get(URL, HTTP_RANGE=piece)) for piece in pieces) == finished


def test_a_range_beyond_the_file_is_416(api, finished):
    response = api.get(URL, HTTP_RANGE=f"bytes={len(finished)}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(finished)}"
    assert response.json()["type"] == "range_not_satisfiable"
    assert api.get(URL, HTTP_RANGE="bytes=-0").status_code == 416


@pytest.mark.parametrize("header", ["bytes=0-9,20-29", "bytes=9-0", "items=0-9", "bytes=x-"])
def test_several_or_malformed_ranges_get_the_whole_file(api, finished, header):
    response = api.get(URL, HTTP_RANGE=header)
    assert response.status_code == 200
    assert body(response) == finished


def test_if_range_sends_the_range_only_for_the_same_file(api, finished):
    etag = f'"{hashlib.sha256(finished).hexdigest()}"'
    same = api.get(URL, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=etag)
    assert same.status_code == 206
    assert body(same) == finished[:10]
    changed = api.get(URL, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"another"')
    assert changed.status_code == 200
    assert body(changed) == finished


def test_the_admin_download_sends_ranges_too(api, finished):
    export = ReportExport.objects.get()
    url = f"/admin/django_report_export/reportexport/{export.pk}/download/"
    response = api.get(url, HTTP_RANGE="bytes=-100")
    assert response.status_code == 206
    assert body(response) == finished[-100:]


def test_byte_range_rules():
    assert byte_range("bytes=0-0", 1) == (0, 0)
    assert byte_range("bytes=-5", 3) == (0, 2)
    with pytest.raises(Unsatisfiable):
        byte_range("bytes=0-", 0)
    with pytest.raises(Unsatisfiable):
        byte_range("bytes=-1", 0)
