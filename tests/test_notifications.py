"""Webhooks and emails of an export's events, against a real HTTP receiver on 127.0.0.1, a
real Redis and burst RQ workers: signed deliveries checked with the snippet of
docs/notifications.md, retries on 5xx and timeouts, none on 4xx, the export never waiting."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import CommandError
from django.test import Client
from django.utils import translation

from django_report_export import signals
from django_report_export.columns import column_names
from django_report_export.models import ReportExport, Status, WebhookDelivery
from django_report_export.registry import site
from django_report_export.runs.single import run_export
from testproject.shop.factories import ProductFactory

from .support.receiver import Receiver
from .support.users import make_user

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec-test-0123456789"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "notifications.md"
BODY_KEYS = {
    "event",
    "id",
    "service",
    "status",
    "status_name",
    "processed",
    "file",
    "file_size",
    "sha256",
    "expires_at",
    "error",
}


def documented_verify():
    """The ``verify`` function of the docs' "Verifying a delivery" snippet, as printed."""
    text = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (snippet,) = [block for block in blocks if "def verify(" in block]
    namespace: dict = {}
    exec(snippet, namespace)
    return namespace["verify"]


@pytest.fixture
def products():
    return ProductFactory.create_batch(30)


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


@pytest.fixture
def hooked(settings, receiver):
    """Every event to ``receiver``, retried at once (intervals of 0), a 1 s timeout."""
    settings.REPORT_EXPORT = {
        **settings.REPORT_EXPORT,
        "BASE_URL": "http://shop.test",
        "WEBHOOKS": [{"url": receiver.url, "secret": SECRET}],
        "WEBHOOK_RETRY_INTERVALS": [0, 0],
        "WEBHOOK_TIMEOUT": 1,
    }
    return receiver


def attempts(event: str) -> list[tuple[int, int | None]]:
    rows = WebhookDelivery.objects.filter(event=event).order_by("attempt")
    return [(row.attempt, row.status_code) for row in rows]


def test_signed_delivery_verified_with_the_documented_snippet(api, products, worker, hooked):
    started = api.post("/api/report/product/start?format=csv").json()
    worker()
    assert hooked.events() == ["started", "finished"]
    finished = hooked.received[1]
    body = json.loads(finished.body)
    assert set(body) == BODY_KEYS
    status = api.get("/api/report/product/status").json()
    assert body["event"] == "finished"
    assert body["id"] == started["id"]
    assert body["status"] == Status.FINISHED
    assert body["status_name"] == "Finished"
    assert body["processed"] == 30 == status["processed"]
    assert body["file_size"] == status["file_size"] > 0
    assert body["file"] == f"http://shop.test/api/report/product/download?id={started['id']}"
    assert body["sha256"] == status["sha256"]
    assert re.fullmatch(r"[0-9a-f]{64}", body["sha256"])
    assert body["expires_at"] == status["expires_at"] is not None
    assert json.loads(hooked.received[0].body)["status_name"] == "Starting"

    verify = documented_verify()
    header = finished.headers["Report-Export-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    assert verify(SECRET, header, finished.body)
    assert not verify("another-secret", header, finished.body)
    assert not verify(SECRET, header, finished.body.replace(b"30", b"31"))
    assert not verify(SECRET, header, finished.body, tolerance=-1)
    assert finished.headers["Content-Type"] == "application/json"
    assert finished.headers["Report-Export-Event"] == "finished"
    assert attempts("finished") == [(1, 200)]
    delivery = WebhookDelivery.objects.get(event="finished")
    assert finished.headers["Report-Export-Delivery"] == str(delivery.delivery)


def test_a_500_is_retried_until_the_200(api, products, worker, hooked):
    hooked.script = [(500, 0), (200, 0)]
    api.post("/api/report/product/start?format=csv")
    worker()
    # started: 500, then (queued again behind finished) 200; finished: 200.
    assert hooked.events() == ["started", "finished", "started"]
    assert attempts("started") == [(1, 500), (2, 200)]
    first, second = hooked.received[0], hooked.received[2]
    assert first.body == second.body
    assert first.headers["Report-Export-Delivery"] == second.headers["Report-Export-Delivery"]
    assert attempts("finished") == [(1, 200)]


def test_a_4xx_is_not_retried(api, products, worker, hooked):
    hooked.script = [(404, 0)]
    api.post("/api/report/product/start?format=csv")
    worker()
    assert hooked.events() == ["started", "finished"]
    assert attempts("started") == [(1, 404)]
    assert attempts("finished") == [(1, 404)]
    assert api.get("/api/report/product/status").json()["status"] == Status.FINISHED


@pytest.mark.slow  # waits out four delivery timeouts
def test_a_hanging_receiver_does_not_delay_the_export(api, products, worker, hooked, settings):
    hooked.script = [(200, 10)]
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "WEBHOOK_RETRY_INTERVALS": [0]}
    finished_at: list[float] = []

    def note(sender, export, **kwargs):
        finished_at.append(time.monotonic())

    signals.export_finished.connect(note)
    try:
        begin = time.monotonic()
        api.post("/api/report/product/start?format=csv")
        worker()
        end = time.monotonic()
    finally:
        signals.export_finished.disconnect(note)
    print(f"Finished after {finished_at[0] - begin:.2f} s; worker done after {end - begin:.2f} s")
    assert finished_at[0] - begin < 2
    assert api.get("/api/report/product/status").json()["status"] == Status.FINISHED
    # Each event: two attempts, each given up after WEBHOOK_TIMEOUT (1 s).
    timed_out = WebhookDelivery.objects.filter(status_code=None)
    assert timed_out.count() == 4
    assert all("timed out" in row.error and 900 <= row.duration_ms < 3000 for row in timed_out)
    assert end - begin >= 4


def test_a_redis_that_refuses_the_job_fails_no_export(api, products, worker, settings, caplog):
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "dead": {"URL": "redis://127.0.0.1:1/0"}}
    settings.REPORT_EXPORT = {
        **settings.REPORT_EXPORT,
        "NOTIFY_QUEUE": "dead",
        "WEBHOOKS": [{"url": "http://127.0.0.1:1/hook", "secret": SECRET}],
    }
    with caplog.at_level(logging.ERROR, logger="django_report_export.notifications"):
        assert api.post("/api/report/product/start?format=csv").status_code == 202
        worker()
    assert api.get("/api/report/product/status").json()["status"] == Status.FINISHED
    logged = [r.getMessage() for r in caplog.records]
    assert any("started notifications could not be queued" in m for m in logged)
    assert any("finished notifications could not be queued" in m for m in logged)


def test_events_filter_and_per_service_endpoints(
    api, products, worker, settings, receiver, monkeypatch
):
    with Receiver() as other:
        settings.REPORT_EXPORT = {
            **settings.REPORT_EXPORT,
            "BASE_URL": "",
            "WEBHOOKS": [{"url": receiver.url, "secret": SECRET, "events": ["finished"]}],
        }
        service = site.get("product")
        monkeypatch.setattr(
            service, "webhooks", [{"url": other.url, "secret": "svc", "events": ["canceled"]}]
        )
        api.post("/api/report/product/start?format=csv")
        api.delete("/api/report/product/cancel")
        api.post("/api/report/product/start?format=csv")
        worker()
        assert receiver.events() == ["finished"]
        assert other.events() == ["canceled"]
        body = json.loads(other.received[0].body)
        assert body["status_name"] == "Canceled"
        assert body["file"] is None
        assert body["file_size"] is None
        assert documented_verify()(
            "svc", other.received[0].headers["Report-Export-Signature"], other.received[0].body
        )
        # Without BASE_URL the link is the path.
        assert json.loads(receiver.received[0].body)["file"].startswith("/api/report/product/")


def test_error_event(api, products, worker, hooked, settings, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    exports = settings.STORAGES["exports"]
    options = {**exports.get("OPTIONS", {}), "location": blocker / "exports"}
    settings.STORAGES = {**settings.STORAGES, "exports": {**exports, "OPTIONS": options}}
    api.post("/api/report/product/start?format=csv")
    with pytest.raises(NotADirectoryError):
        run_export(str(ReportExport.objects.get().pk))
    worker()
    assert hooked.events() == ["started", "error"]
    body = json.loads(hooked.received[1].body)
    assert body["status_name"] == "Error"
    assert body["error"]
    assert body["file"] is None


def test_the_admin_page_lists_the_attempts(api, products, worker, hooked, admin_user_):
    hooked.script = [(503, 0), (200, 0)]
    export_id = api.post("/api/report/product/start?format=csv").json()["id"]
    worker()
    client = Client()
    client.force_login(admin_user_)
    html = client.get(f"/admin/django_report_export/reportexport/{export_id}/change/").content
    text = html.decode()
    assert "webhook deliveries" in text.lower()
    assert hooked.url in text
    assert ">503<" in text
    assert ">200<" in text
    assert SECRET not in text


# --- email -------------------------------------------------------------------------------


def test_notify_email_sends_the_link_when_it_ends(api, products, worker, settings, admin_user_):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "BASE_URL": "http://shop.test"}
    started = api.post("/api/report/product/start?format=csv&notify=email")
    assert started.status_code == 202
    export = ReportExport.objects.get()
    assert export.notify_email == admin_user_.email
    worker()
    (message,) = mail.outbox
    assert message.to == [admin_user_.email]
    assert message.subject == "Your product export is ready"
    link = f"http://shop.test/api/report/product/download?id={export.pk}"
    assert link in message.body
    assert "Rows: 30" in message.body
    assert "Finished" in message.body


def test_service_recipients_in_german_on_cancel(api, products, worker, monkeypatch, settings):
    monkeypatch.setattr(site.get("product"), "notify_emails", ["reports@shop.test"])
    settings.LANGUAGE_CODE = "de"
    api.post("/api/report/product/start?format=csv")
    api.delete("/api/report/product/cancel")
    with translation.override("en"):  # the project's language, not the thread's
        worker()
    (message,) = mail.outbox
    assert message.to == ["reports@shop.test"]
    assert message.subject == "Ihr Export von product wurde abgebrochen"
    assert "Abgebrochen" in message.body


def test_no_email_without_asking(api, products, worker):
    api.post("/api/report/product/start?format=csv")
    worker()
    assert mail.outbox == []


def test_notify_must_be_email_and_the_user_needs_an_address(api, admin_user_):
    response = api.post("/api/report/product/start?format=csv&notify=sms")
    assert response.status_code == 400
    assert "notify" in response.json()["errors"]
    admin_user_.email = ""
    admin_user_.save()
    response = api.post("/api/report/product/start?format=csv&notify=email")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["notify"]
    assert not ReportExport.objects.exists()


def test_admin_action_checkbox_asks_for_the_email(products, worker, transactional_db):
    user = make_user("clerk", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    data = {
        "service": "product",
        "selection": "all",
        "format": "csv",
        "columns": column_names(site.get("product")),
        "notify": "on",
        "_start": "1",
    }
    response = client.post("/admin/django_report_export/reportexport/start/", data)
    assert response.status_code == 302, response.content
    assert ReportExport.objects.get().notify_email == "clerk@example.com"
    worker()
    assert [m.to for m in mail.outbox] == [["clerk@example.com"]]


# --- checks ------------------------------------------------------------------------------


def check_ids():
    from django.core import checks

    return sorted(message.id for message in checks.run_checks() if message.id)


def test_checks_name_a_broken_endpoint_and_a_missing_base_url(settings, monkeypatch):
    settings.REPORT_EXPORT = {
        **settings.REPORT_EXPORT,
        "BASE_URL": "",
        "WEBHOOKS": [{"url": "ftp://x"}],
    }
    assert "django_report_export.E026" in check_ids()
    settings.REPORT_EXPORT = {
        **settings.REPORT_EXPORT,
        "WEBHOOKS": [{"url": "https://hooks.example/x", "secret": "s", "events": ["done"]}],
    }
    assert "django_report_export.E026" in check_ids()
    settings.REPORT_EXPORT = {
        **settings.REPORT_EXPORT,
        "WEBHOOKS": [{"url": "https://hooks.example/x", "secret": "s", "events": ["finished"]}],
    }
    ids = check_ids()
    assert "django_report_export.E026" not in ids
    assert "django_report_export.W002" in ids
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "BASE_URL": "https://shop.example"}
    assert "django_report_export.W002" not in check_ids()
    monkeypatch.setattr(site.get("product"), "webhooks", [{"url": "https://x.example"}])
    monkeypatch.setattr(site.get("product"), "notify_emails", "reports@shop.test")
    assert check_ids().count("django_report_export.E031") == 2


def test_command_notify_email(products, worker, transactional_db):
    from django.core.management import call_command

    call_command(
        "report_export",
        "start",
        "product",
        "--format",
        "csv",
        "--notify-email",
        "ops@shop.test",
        stdout=io.StringIO(),
    )
    assert ReportExport.objects.get().notify_email == "ops@shop.test"
    worker()
    assert [m.to for m in mail.outbox] == [["ops@shop.test"]]
    with pytest.raises(CommandError, match="--notify-email"):
        call_command(
            "report_export",
            "start",
            "product",
            "--format",
            "csv",
            "--notify-email",
            "nobody",
            stdout=io.StringIO(),
        )


def test_a_broken_endpoint_fails_no_export(api, products, worker, monkeypatch, caplog):
    # Check E031 reports it; a project that silenced the check still gets its exports.
    monkeypatch.setattr(site.get("product"), "webhooks", [{"url": "http://127.0.0.1:1/"}])
    with caplog.at_level(logging.ERROR, logger="django_report_export.notifications"):
        assert api.post("/api/report/product/start?format=csv").status_code == 202
        worker()
    assert api.get("/api/report/product/status").json()["status"] == Status.FINISHED
    assert any("finished notifications failed" in r.getMessage() for r in caplog.records)


def test_an_endpoint_changed_before_its_job_runs_is_not_sent_to(
    api, products, worker, hooked, settings
):
    api.post("/api/report/product/start?format=csv")  # "started" queued for hooked
    with Receiver() as other:
        settings.REPORT_EXPORT = {
            **settings.REPORT_EXPORT,
            "WEBHOOKS": [{"url": other.url, "secret": "new", "events": ["canceled"]}],
        }
        worker()
        assert hooked.received == []
        assert other.received == []
    assert not WebhookDelivery.objects.exists()
