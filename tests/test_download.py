"""Where export files live and how their links are given: the system checks that keep files
private (E009: redirects must expire, W001: not under MEDIA_ROOT), and the admin's download,
which answers as the API's does."""

from __future__ import annotations

import csv
import gzip
import io
from typing import Any

import pytest
from django.core import checks
from django.core.files.storage import FileSystemStorage
from django.test import Client

from django_report_export import control
from django_report_export.conf import export_settings
from django_report_export.registry import site
from django_report_export.storage import get_storage
from testproject.settings import s3_export_storage
from testproject.shop.factories import ProductFactory

CHANGELIST = "/admin/django_report_export/reportexport/"
FILE_SYSTEM = "django.core.files.storage.FileSystemStorage"


class SignedStorage(FileSystemStorage):
    """A storage that declares its URLs signed (as a shop's own signing storage would)."""

    report_export_signed_urls = True


def check_ids() -> list[str]:
    return [
        message.id or ""
        for message in checks.run_checks()
        if (message.id or "").startswith("django_report_export.")
    ]


def use_storage(settings: Any, backend: dict[str, Any], **report_export: Any) -> None:
    settings.STORAGES = {**settings.STORAGES, "private": backend}
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "STORAGE": "private", **report_export}


def s3(querystring_auth: bool) -> dict[str, Any]:
    backend = s3_export_storage({"EXPORT_STORAGE_S3_BUCKET": "exports"})
    backend["OPTIONS"]["querystring_auth"] = querystring_auth
    return backend


# --- E009: a redirect must lead to a URL that expires -----------------------------------------


def test_redirect_on_a_file_system_storage_is_refused(settings, tmp_path):
    use_storage(
        settings, {"BACKEND": FILE_SYSTEM, "OPTIONS": {"location": tmp_path}}, DOWNLOAD="redirect"
    )
    assert "django_report_export.E009" in check_ids()


def test_redirect_on_s3_without_querystring_auth_is_refused(settings):
    use_storage(settings, s3(querystring_auth=False), DOWNLOAD="redirect")
    assert "django_report_export.E009" in check_ids()


@pytest.mark.parametrize(
    "backend",
    [s3(querystring_auth=True), {"BACKEND": f"{__name__}.SignedStorage"}],
    ids=["s3-querystring-auth", "declared-signed"],
)
def test_redirect_on_a_storage_with_signed_urls_is_allowed(settings, backend):
    use_storage(settings, backend, DOWNLOAD="redirect")
    assert "django_report_export.E009" not in check_ids()


def test_streamed_downloads_need_no_signed_urls(settings, tmp_path):
    use_storage(settings, {"BACKEND": FILE_SYSTEM, "OPTIONS": {"location": tmp_path}})
    assert "django_report_export.E009" not in check_ids()


# --- W001: export files in the web server's public folder ------------------------------------


def test_default_storage_under_media_root_is_warned_of(settings, media_root):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "STORAGE": "default"}
    assert "django_report_export.W001" in check_ids()


def test_a_folder_inside_media_root_is_warned_of(settings, media_root):
    # An explicit base_url, not MEDIA_URL, does not make the files any less served.
    backend = {
        "BACKEND": FILE_SYSTEM,
        "OPTIONS": {"location": media_root / "exports", "base_url": "/private/"},
    }
    use_storage(settings, backend)
    assert "django_report_export.W001" in check_ids()


def test_the_demo_keeps_exports_in_a_private_storage(settings, media_root):
    assert export_settings.STORAGE == "exports"
    storage = get_storage()
    assert isinstance(storage, FileSystemStorage)
    assert not storage.path("x").startswith(str(media_root))
    assert check_ids() == []


# --- the admin's download answers like the API's ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_admin_download_of_a_gzip_export_is_a_gzip_attachment(api, admin_user_, worker):
    ProductFactory.create_batch(5)
    service = site.get("product")
    query = {"format": ["csv"], "compression": ["gzip"]}
    export_id = control.start(service, control.parse_request(service, query))["id"]
    worker()
    client = Client()
    client.force_login(admin_user_)

    by_admin = client.get(f"{CHANGELIST}{export_id}/download/")
    by_api = api.get("/api/report/product/download")

    assert by_admin.status_code == by_api.status_code == 200
    assert by_admin["Content-Type"] == "application/gzip"
    assert by_admin["Content-Disposition"].startswith("attachment; filename=")
    assert by_admin["Content-Disposition"].endswith('.csv.gz"')
    for header in ("Content-Type", "Content-Disposition", "Content-Length"):
        assert by_admin[header] == by_api[header], header
    body = b"".join(by_admin.streaming_content)
    assert body == b"".join(by_api.streaming_content)
    rows = list(csv.reader(io.StringIO(gzip.decompress(body).decode())))
    assert len(rows) == 6  # the header and five products
