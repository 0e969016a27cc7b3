"""The ``ReportExport`` admin and the export action of the shop's ModelAdmins, with a real
Redis and burst RQ workers in this process."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_report_export import control
from django_report_export.admin.actions import ACTION_PREFIX
from django_report_export.models import ReportExport, Status
from django_report_export.registry import site
from testproject.shop.factories import OrderFactory, ProductFactory
from testproject.shop.models import Product
from testproject.shop.report_exports import ProductExport

from .support.users import make_user

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/django_report_export/reportexport/"


@pytest.fixture
def client(admin_user_) -> Client:
    client = Client()
    client.force_login(admin_user_)
    return client


@pytest.fixture
def products():
    return ProductFactory.create_batch(30)


def start(service: str = "product", export_format: str = "csv", user=None, **params) -> str:
    query = {"format": [export_format], **{k: [v] for k, v in params.items()}}
    registered = site.get(service)
    status = control.start(registered, control.parse_request(registered, query), user=user)
    return str(status["id"])


def page(client: Client, export_id: str) -> str:
    response = client.get(f"{CHANGELIST}{export_id}/change/")
    assert response.status_code == 200
    return response.content.decode()


def visible(html: str, name: str) -> bool:
    """Whether the button (form) or link ``name`` is shown on the progress page."""
    if name == "download":
        tag = re.search(r'<a class="rex-download"[^>]*>', html)
    else:
        tag = re.search(rf'<form[^>]*action="[^"]*/{name}/"[^>]*>', html)
    assert tag, name
    return " hidden" not in tag.group(0)


def download(client: Client, export_id: str) -> bytes:
    response = client.get(f"{CHANGELIST}{export_id}/download/")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


# --- the changelist ----------------------------------------------------------------------


def test_changelist_lists_exports_with_status_progress_and_download(client, products, worker):
    OrderFactory.create_batch(3)
    product_export = start("product")
    worker()
    order_export = start("order", "json")
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert "progress.js" in html
    assert html.count('role="progressbar"') == 2
    field = 'data-rex-export="{}" data-rex-field="status_name">{}<'
    row = re.search(field.format(product_export, r"(\w+)"), html)
    assert row
    assert row.group(1) == "Finished"
    assert f'aria-valuenow="100" data-rex-export="{product_export}"' in html
    assert "30 / 30" in html
    assert f"{product_export}/download/" in html
    # The active export polls its service's status endpoint; the finished one does not.
    status_url = reverse("django_report_export:report-status", kwargs={"service": "order"})
    assert f'data-rex-poll="{status_url}"' in html
    assert html.count("data-rex-poll=") == 1
    assert field.format(order_export, "Starting") in html

    only_orders = client.get(CHANGELIST, {"service": "order"}).content.decode()
    assert order_export in only_orders
    assert product_export not in only_orders
    finished = client.get(CHANGELIST, {"status__exact": Status.FINISHED}).content.decode()
    assert product_export in finished
    assert order_export not in finished
    this_year = client.get(CHANGELIST, {"created_at__year": timezone.now().year})
    assert product_export in this_year.content.decode()
    assert "Today" in html  # the date filter


def test_changelist_renders_when_redis_is_down(client, products, settings):
    export_id = start("product")
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "gone": {"URL": "redis://127.0.0.1:1/0"}}
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "QUEUE": "gone", "REDIS_TIMEOUT": 0.5}
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert export_id in response.content.decode()
    assert "Starting" in page(client, export_id)  # the record's state


def test_records_are_read_only(client, products, worker):
    export_id = start("product")
    worker()
    assert client.get(f"{CHANGELIST}add/").status_code == 403
    html = page(client, export_id)
    assert 'name="_save"' not in html
    assert client.post(f"{CHANGELIST}{export_id}/change/", {"format": "json"}).status_code == 403
    assert client.get(f"{CHANGELIST}{export_id}/delete/").status_code == 403
    assert ReportExport.objects.get().format == "csv"


def test_staff_sees_only_the_services_they_may_read(products, worker):
    OrderFactory.create_batch(2)
    product_export = start("product")
    order_export = start("order", "json")
    worker()
    clerk = make_user("clerk", "shop.view_product", is_staff=True)
    client = Client()
    client.force_login(clerk)
    html = client.get(CHANGELIST).content.decode()
    assert product_export in html
    assert order_export not in html
    assert client.get(f"{CHANGELIST}{order_export}/change/").status_code == 302  # "not found"
    assert client.get(f"{CHANGELIST}{order_export}/download/").status_code == 404
    assert client.get(f"{CHANGELIST}{product_export}/download/").status_code == 200
    nobody = make_user("nobody", is_staff=True)
    client.force_login(nobody)
    assert client.get(CHANGELIST).status_code == 403


# --- the progress page -------------------------------------------------------------------


def test_progress_page_of_a_starting_export(client, products):
    export_id = start("product", fields="id,sku")
    html = page(client, export_id)
    status_url = reverse("django_report_export:report-status", kwargs={"service": "product"})
    assert f'data-rex-poll="{status_url}"' in html
    assert 'aria-valuenow="0"' in html
    assert "rex-progress-large" in html
    assert visible(html, "pause")
    assert visible(html, "cancel")
    assert not visible(html, "resume")
    assert not visible(html, "download")
    assert "all rows matching the filters" in html


def test_pause_resume_and_cancel_buttons(client, products, worker):
    export_id = start("product")
    base = f"{CHANGELIST}{export_id}"
    service = site.get("product")

    response = client.post(f"{base}/pause/")
    assert response.status_code == 302
    assert response["Location"] == f"{base}/change/"
    assert control.get_status(service)["status"] == Status.PAUSED
    html = page(client, export_id)
    assert "Paused" in html
    assert visible(html, "resume")
    assert visible(html, "cancel")
    assert not visible(html, "pause")
    assert 'data-rex-status="3"' in html  # still polled: someone may resume it elsewhere

    assert client.post(f"{base}/resume/").status_code == 302
    assert control.get_status(service)["status"] == Status.STARTING

    assert client.post(f"{base}/cancel/").status_code == 302
    assert control.get_status(service)["status"] == Status.CANCELED
    worker()
    assert ReportExport.objects.get(pk=export_id).status == Status.CANCELED
    html = page(client, export_id)
    assert not any(visible(html, name) for name in ("pause", "resume", "cancel", "download"))
    assert "data-rex-poll=" not in html

    # Not allowed in this state: an error message, nothing changes.
    response = client.post(f"{base}/resume/", follow=True)
    assert "has not been paused" in response.content.decode()
    assert client.get(f"{base}/pause/").status_code == 405


def test_buttons_never_act_on_a_newer_export(client, products):
    old = start("product")
    new = start("product", "json")
    response = client.post(f"{CHANGELIST}{old}/cancel/", follow=True)
    assert "no longer the current export" in response.content.decode()
    status = control.get_status(site.get("product"))
    assert status["id"] == new
    assert status["status"] == Status.STARTING


def test_download_link_when_finished(client, api, products, worker):
    export_id = start("product", "json")
    worker()
    html = page(client, export_id)
    assert visible(html, "download")
    assert "Finished" in html
    assert 'aria-valuenow="100"' in html
    content = download(client, export_id)
    api_file = api.get("/api/report/product/download")
    assert content == b"".join(api_file.streaming_content)
    assert len(json.loads(content)) == 30
    status = client.get(f"{CHANGELIST}{export_id}/status/").json()
    assert status["status"] == Status.FINISHED
    assert status["file"].endswith(f"{export_id}/download/")


def test_failed_export_shows_its_error(client, products, worker, monkeypatch):
    def broken(self):
        raise RuntimeError("the warehouse database is on fire")

    monkeypatch.setattr(ProductExport, "get_queryset", broken)
    export_id = start("product")
    worker()
    assert ReportExport.objects.get(pk=export_id).status == Status.ERROR
    html = page(client, export_id)
    assert "the warehouse database is on fire" in html
    assert re.search(r'class="rex-message errornote"[^>]*data-rex-field="error"', html)
    listing = client.get(CHANGELIST).content.decode()
    assert "RuntimeError: the warehouse database is on fire" in listing


# --- the export action -------------------------------------------------------------------


def run_action(client: Client, url: str, data: dict) -> str:
    response = client.post(url, data)
    assert response.status_code == 200, response.content[:500]
    html = response.content.decode()
    assert 'action="/admin/django_report_export/reportexport/start/"' in html
    return html


def hidden_value(html: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}"(?: value="([^"]*)")?', html)
    assert match, name
    return match.group(1) or ""


def submit(client: Client, html: str, **fields) -> str:
    data = {name: hidden_value(html, name) for name in ("service", "selection", "keys", "next")}
    data.update(fields)
    response = client.post("/admin/django_report_export/reportexport/start/", data)
    assert response.status_code == 302, response.content[:2000]
    match = re.fullmatch(r"/admin/django_report_export/reportexport/([0-9a-f-]+)/change/",
                         response["Location"])  # fmt: skip
    assert match
    return match.group(1)


def test_every_shop_admin_of_a_service_model_offers_the_action(rf, admin_user_):
    request = rf.get("/admin/")
    request.user = admin_user_
    for service in site:
        model_admin = admin.site._registry[service.model]
        assert f"{ACTION_PREFIX}{service.name}" in model_admin.get_actions(request), service


def test_action_exports_exactly_the_selected_rows(client, products, worker):
    chosen = sorted(p.pk for p in products[3:10])
    html = run_action(
        client,
        "/admin/shop/product/",
        {"action": f"{ACTION_PREFIX}product", "_selected_action": chosen, "index": 0},
    )
    assert "7 selected rows will be exported" in html
    assert 'value="json"' in html
    assert 'value="csv"' in html
    assert 'value="xml"' not in html
    export_id = submit(client, html, format="csv", columns=["id", "sku", "price"])
    export = ReportExport.objects.get(pk=export_id)
    assert export.keys == chosen
    assert export.created_by.username == "boss"
    assert visible(page(client, export_id), "pause")
    worker()
    rows = list(csv.reader(io.StringIO(download(client, export_id).decode())))
    assert rows[0] == ["id", "sku", "price"]
    assert [int(row[0]) for row in rows[1:]] == chosen
    assert {row[1] for row in rows[1:]} == {p.sku for p in products if p.pk in chosen}
    assert "7 selected" in page(client, export_id)


def test_action_on_the_whole_filtered_changelist(client, worker):
    ProductFactory.create_batch(6, is_active=True)
    inactive = sorted(p.pk for p in ProductFactory.create_batch(4, is_active=False))
    html = run_action(
        client,
        "/admin/shop/product/?is_active__exact=0",
        {
            "action": f"{ACTION_PREFIX}product",
            "_selected_action": inactive[:1],
            "select_across": "1",
            "index": 0,
        },
    )
    assert hidden_value(html, "next") == "/admin/shop/product/?is_active__exact=0"
    export_id = submit(client, html, format="json", columns=["id", "is_active"])
    assert ReportExport.objects.get(pk=export_id).keys == inactive
    worker()
    rows = json.loads(download(client, export_id))
    assert [row["id"] for row in rows] == inactive
    assert not any(row["is_active"] for row in rows)


def test_action_on_the_whole_unfiltered_changelist_exports_the_service(client, products, worker):
    html = run_action(
        client,
        "/admin/shop/product/",
        {
            "action": f"{ACTION_PREFIX}product",
            "_selected_action": [products[0].pk],
            "select_across": "1",
            "index": 0,
        },
    )
    assert "All rows of the <strong>product</strong> service will be exported: 30 rows" in html
    export_id = submit(client, html, format="csv", columns=["id"], compression="gzip")
    export = ReportExport.objects.get(pk=export_id)
    assert export.keys is None
    assert export.compression == "gzip"
    worker()
    assert ReportExport.objects.get(pk=export_id).processed == Product.objects.count() == 30


def test_action_page_validates_what_it_is_given(client, products):
    html = run_action(
        client,
        "/admin/shop/product/",
        {"action": f"{ACTION_PREFIX}product", "_selected_action": [products[0].pk], "index": 0},
    )
    data = {name: hidden_value(html, name) for name in ("service", "selection", "next")}
    url = "/admin/django_report_export/reportexport/start/"
    bad_keys = client.post(url, {**data, "keys": "1,abc", "format": "csv", "columns": ["id"]})
    assert bad_keys.status_code == 200
    assert "Not a primary key of Product" in bad_keys.content.decode()
    bad_format = client.post(url, {**data, "keys": "1", "format": "xml", "columns": ["id"]})
    assert "Select a valid choice" in bad_format.content.decode()
    no_columns = client.post(url, {**data, "keys": "1", "format": "csv"})
    assert "This field is required" in no_columns.content.decode()
    unknown = client.post(url, {**data, "service": "nope", "format": "csv"}, follow=True)
    assert "Unknown service" in unknown.content.decode()
    assert not ReportExport.objects.exists()


def test_action_warns_that_an_active_export_will_be_canceled(client, products):
    start("product")
    html = run_action(
        client,
        "/admin/shop/product/",
        {"action": f"{ACTION_PREFIX}product", "_selected_action": [products[0].pk], "index": 0},
    )
    assert "starting this one cancels it" in html


def test_admin_user_action_exports_staff_only(client, admin_user_, worker):
    clerk = make_user("clerk", is_staff=True)
    customer = make_user("customer")
    html = run_action(
        client,
        "/admin/auth/user/",
        {
            "action": f"{ACTION_PREFIX}adminUser",
            "_selected_action": [clerk.pk, customer.pk],
            "index": 0,
        },
    )
    assert "of which 1 are part of the service" in html
    export_id = submit(client, html, format="json", columns=["id", "username"])
    worker()
    rows = json.loads(download(client, export_id))
    assert rows == [{"id": clerk.pk, "username": "clerk"}]
