"""What a person sees in a browser: the demo's home page, the browsable API's pages and start
form, and (``slow``) the whole admin flow in headless Chromium against a live server and a
real ``rqworker`` process: log in, export a changelist selection, watch the progress bar
reach 100 %, download the file and read it back.

The headless test needs Debian's ``chromium`` and the ``playwright`` package (only its
driver: the browser is the system's, nothing is downloaded). Without them it is skipped
locally; under CI (``CI=true``) it fails instead.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
from pathlib import Path

import pytest

from django_report_export import control
from django_report_export.models import ReportExport, Status
from django_report_export.registry import site
from testproject.shop.factories import OrderFactory, ProductFactory

from .support.workers import WorkerProcess

pytestmark = pytest.mark.django_db(transaction=True)

HTML = {"HTTP_ACCEPT": "text/html"}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# --- the home page and the browsable API -------------------------------------------------


def test_home_page_links_the_interfaces_and_tells_the_logins(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for link in ('href="/admin/"', 'href="/api/report/"', 'href="/api/docs/"'):
        assert link in html
    for login in ("admin", "manager", "support"):
        assert f"<td><code>{login}</code></td><td><code>{login}</code></td>" in html


def test_every_endpoint_renders_in_the_browsable_api(api):
    pages = {
        "/api/report/": (200, "Report exports"),
        "/api/report/order/status": (200, "order · Status"),
        "/api/report/order/start": (405, "order · Start an export"),
        "/api/report/order/pause": (405, "order · Pause"),
        "/api/report/order/resume": (405, "order · Resume"),
        "/api/report/order/cancel": (405, "order · Cancel"),
        "/api/report/order/retry": (405, "order · Retry"),
        "/api/report/order/download": (404, "order · Download"),
        "/api/report/order/history": (200, "order · History"),
    }
    for url, (code, title) in pages.items():
        response = api.get(url, **HTML)
        assert response.status_code == code, url
        assert response["Content-Type"].startswith("text/html")
        html = response.content.decode()
        assert f"<h1>{title}</h1>" in html, url
        assert "?format=" not in html  # no renderer links: format is the export format
        if url != "/api/report/":
            assert 'href="/api/report/order/history">GET history</a>' in html


def test_start_form_offers_the_services_formats_fields_and_filters(api):
    html = api.get("/api/report/order/start", **HTML).content.decode()
    form = html[html.index('id="post-object-form"') :]
    assert '<option value="json"' in form
    assert '<option value="xml"' in form
    assert '<option value="csv"' not in form  # order, a document: no csv, no xlsx
    assert '<option value="xlsx"' not in form
    assert 'name="fields"' in form
    assert "customer_email" in form  # the fields are listed, by name
    assert "billing_address" in form
    assert '<option value="gzip"' in form
    for name in ("status", "customer_email", "total_min", "created_after", "paid"):
        assert f'name="{name}"' in form, name
    assert '<option value="paid"' in form  # status choices from the FilterSet


def test_parameterless_endpoints_get_a_plain_button(api):
    html = api.get("/api/report/order/pause", **HTML).content.decode()
    assert "This endpoint takes no parameters." in html
    assert 'name="format"' not in html
    assert "_content" not in html  # no raw data form
    retry = api.get("/api/report/order/retry", **HTML).content.decode()
    assert "This endpoint takes no parameters." in retry
    assert 'name="format"' not in retry
    html = api.get("/api/report/order/cancel", **HTML).content.decode()
    assert "deleteModal" in html
    assert 'name="format"' not in html


def test_the_start_form_posts_form_data(api, worker):
    OrderFactory.create_batch(4, status="paid")
    OrderFactory.create_batch(2, status="pending")
    form = {
        "format": "json",
        "fields": "",
        "compression": "none",
        "status": "paid",
        "customer_email": "",
        "total_min": "",
    }
    response = api.post("/api/report/order/start", form, format="multipart", **HTML)
    assert response.status_code == 202
    assert "order · Start an export" in response.content.decode()
    export = ReportExport.objects.get()
    assert export.filters == {"status": "paid"}
    assert export.compression == ""
    worker()
    assert ReportExport.objects.get().processed == 4

    bad = api.post(
        "/api/report/order/start", {**form, "total_min": "lots"}, format="multipart", **HTML
    )
    assert bad.status_code == 400
    html = bad.content.decode()
    assert "total_min" in html
    assert 'value="lots"' in html  # the form shows what was sent


# --- headless Chromium -------------------------------------------------------------------


def chromium() -> str:
    """The system's Chromium; skips locally, fails under CI, when it or Playwright is absent."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    missing = []
    if not os.path.exists(path):
        missing.append("Debian's chromium package")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if missing:
        message = f"headless browser test needs {' and '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def browser_page(request, monkeypatch):
    """A page of headless Chromium; indirect parameters are more options of its context
    (``{"locale": "de-DE"}``)."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # meanwhile are plain synchronous ones.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        options = getattr(request, "param", {})
        context = browser.new_context(
            accept_downloads=True, viewport={"width": 1280, "height": 900}, **options
        )
        context.set_default_timeout(30_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


@pytest.mark.slow
def test_admin_export_of_a_selection_in_headless_chromium(live_server, browser_page, tmp_path):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("admin", "admin@example.com", "admin")
    products = ProductFactory.create_batch(40)
    page = browser_page
    started = time.monotonic()

    # Log in, straight to the product changelist.
    page.goto(f"{live_server.url}/admin/login/?next=/admin/shop/product/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin")
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")

    # Select every third row and run the export action on them.
    boxes = page.locator("input.action-select")
    assert boxes.count() == 40
    chosen = []
    for index in range(0, 40, 3):
        box = boxes.nth(index)
        box.check()
        chosen.append(int(box.get_attribute("value")))
    page.select_option("select[name=action]", "report_export_product")
    page.click("button[name=index]")

    # The action's page: format and columns.
    page.wait_for_selector("text=14 selected rows will be exported")
    page.check("input[name=format][value=csv]")
    for column in page.locator("input[name=columns]").all():
        if column.get_attribute("value") not in ("id", "sku", "price"):
            column.uncheck()
    page.click("input[name=_start]")

    # The progress page, before any worker runs: Starting, 0 %.
    bar = page.locator(".rex-progress-large")
    bar.wait_for()
    assert "The product export has started." in page.content()
    assert page.locator(".rex-panel [data-rex-field=status_name]").inner_text() == "Starting"
    assert bar.get_attribute("aria-valuenow") == "0"
    assert not page.locator(".rex-panel a.rex-download").is_visible()
    page.evaluate("window.rexSamePage = true")  # survives only if the page never reloads

    export = ReportExport.objects.get()
    assert export.keys == sorted(chosen)
    with WorkerProcess(tmp_path / "worker.log", CHUNK_SIZE=1, CHECKPOINT_INTERVAL=0):
        page.wait_for_function(
            "document.querySelector('.rex-progress-large').getAttribute('aria-valuenow') === '100'",
            timeout=60_000,
        )
        page.locator(".rex-panel a.rex-download").wait_for(state="visible")
    assert page.evaluate("window.rexSamePage") is True
    assert page.locator(".rex-panel [data-rex-field=status_name]").inner_text() == "Finished"
    assert page.locator(".rex-panel [data-rex-field=rows]").inner_text() == "14 / 14"
    assert page.locator(".rex-progress-large .rex-progress-label").inner_text() == "100%"
    assert not page.locator("form[action$='/pause/']").is_visible()

    # Download it, as a person would, and read it back.
    with page.expect_download() as download:
        page.click(".rex-panel a.rex-download")
    path = download.value.path()
    rows = list(csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    assert download.value.suggested_filename.endswith(".csv")
    assert rows[0] == ["id", "sku", "price"]
    by_id = {p.pk: p for p in products}
    assert [int(row[0]) for row in rows[1:]] == sorted(chosen)
    assert all(row[1] == by_id[int(row[0])].sku for row in rows[1:])
    assert ReportExport.objects.get().status == Status.FINISHED

    # The browsable API's start form works from the browser too (session, CSRF).
    page.goto(f"{live_server.url}/api/report/product/start")
    form = page.locator("#post-object-form form")
    form.locator("select[name=format]").select_option("json")
    form.locator("select[name=is_active]").select_option("true")
    form.locator("button").click()
    page.wait_for_selector("text=HTTP 202 Accepted")
    latest = ReportExport.objects.order_by("-created_at").first()
    assert (latest.format, latest.filters) == ("json", {"is_active": "true"})
    print(f"headless admin flow: {time.monotonic() - started:.1f} s")


# --- the API docs, offline ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "operation"),
    [
        # Swagger UI renders only the operations near the viewport: the first service's.
        ("/api/docs/", ".opblock-summary-path[data-path='/api/report/adminUser/start']"),
        ("/api/redoc/", "h2:has-text('Services the caller may read, with formats and current')"),
    ],
)
def test_api_docs_render_their_operations_without_network(
    live_server, browser_page, path, operation
):
    """Swagger UI and Redoc come from drf-spectacular-sidecar: with every request to another
    host refused, the page still renders the schema's operations, and asks another host for
    nothing but a picture (Redoc's own "API docs by Redocly" logo)."""
    refused: list[tuple[str, str]] = []

    def local_only(route) -> None:
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            refused.append((route.request.resource_type, route.request.url))
            route.abort()

    browser_page.route("**/*", local_only)
    errors: list[str] = []
    browser_page.on("pageerror", lambda error: errors.append(str(error)))
    browser_page.goto(f"{live_server.url}{path}")
    browser_page.wait_for_selector(operation)
    assert [url for kind, url in refused if kind != "image"] == []
    assert errors == []


@pytest.mark.slow
@pytest.mark.parametrize("browser_page", [{"locale": "de-DE"}], indirect=True)
def test_progress_bar_speaks_german_in_a_german_browser(live_server, browser_page):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("admin", "admin@example.com", "admin")
    ProductFactory.create_batch(5)
    product = site.get("product")
    status = control.start(product, control.parse_request(product, {"format": ["csv"]}))
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/django_report_export/reportexport/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin")
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")
    page.goto(f"{live_server.url}/admin/django_report_export/reportexport/{status['id']}/change/")
    label = page.locator(".rex-panel [data-rex-field=status_name]")
    assert label.inner_text() == "Wartend"
    assert page.locator("button.rex-button-pause").inner_text() == "Pausieren"

    # What progress.js writes: the status label after each poll, the notice of a newer export.
    label.evaluate("element => { element.textContent = '?'; }")
    page.wait_for_function(
        "document.querySelector('.rex-panel [data-rex-field=status_name]').textContent"
        " === 'Wartend'"
    )
    control.pause(product)
    page.wait_for_function(
        "document.querySelector('.rex-panel [data-rex-field=status_name]').textContent"
        " === 'Pausiert'"
    )
    resume = page.locator("button.rex-button-resume")
    resume.wait_for(state="visible")
    assert resume.inner_text() == "Fortsetzen"
    control.start(product, control.parse_request(product, {"format": ["json"]}))
    notice = page.locator(".rex-panel [data-rex-field=notice]")
    notice.wait_for(state="visible")
    assert notice.inner_text() == (
        "Ein neuerer Export hat diesen ersetzt; laden Sie die Seite neu, um seinen endgültigen "
        "Stand zu sehen."
    )
