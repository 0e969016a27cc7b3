"""The German catalog: the admin, its export action, progress.js's JavaScript catalog and the
command in German, while the API's contract strings stay English in every language."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import translation

from django_report_export import control
from django_report_export.admin.actions import ACTION_PREFIX
from django_report_export.management.commands.report_export import Command
from django_report_export.models import Status
from django_report_export.presentation import STATUS_NAMES, contract_status_names
from django_report_export.registry import site
from testproject.shop.factories import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/django_report_export/reportexport/"
CATALOG = f"{CHANGELIST}jsi18n/"
GERMAN = {"HTTP_ACCEPT_LANGUAGE": "de"}


@pytest.fixture(autouse=True)
def no_language_left_active():
    """LocaleMiddleware leaves the last request's language active in the thread: later tests
    of the session must not run in German."""
    yield
    translation.deactivate()


@pytest.fixture
def client(admin_user_) -> Client:
    client = Client()
    client.force_login(admin_user_)
    return client


def start(service: str = "product") -> str:
    registered = site.get(service)
    request = control.parse_request(registered, {"format": ["csv"]})
    return str(control.start(registered, request)["id"])


def test_progress_page_in_german(client):
    ProductFactory.create_batch(3)
    export_id = start()
    html = client.get(f"{CHANGELIST}{export_id}/change/", **GERMAN).content.decode()
    assert 'lang="de"' in html
    assert 'data-rex-field="status_name">Wartend</span>' in html
    for label in ("Zeilen", "Geschwindigkeit", "Restzeit", "Gestartet", "Dateigröße"):
        assert f"<dt>{label}</dt>" in html, label
    for button in ("Pausieren", "Abbrechen", "Fortsetzen"):
        assert f">{button}</button>" in html, button
    assert ">Herunterladen</a>" in html
    assert "Alle Exporte von product" in html
    assert "Diesen Export abbrechen?" in html
    # The catalog of progress.js is loaded before it.
    assert html.index(f'src="{CATALOG}"') < html.index("progress.js")


def test_progress_page_without_a_language_stays_english(client):
    export_id = start()
    html = client.get(f"{CHANGELIST}{export_id}/change/").content.decode()
    assert 'data-rex-field="status_name">Starting</span>' in html
    assert ">Pause</button>" in html
    assert "<dt>Time left</dt>" in html


def test_changelist_and_operation_messages_in_german(client):
    export_id = start()
    html = client.get(CHANGELIST, **GERMAN).content.decode()
    assert "Report-Exporte" in html
    assert 'data-rex-field="status_name">Wartend<' in html
    response = client.post(f"{CHANGELIST}{export_id}/pause/", follow=True, **GERMAN)
    assert "Pausieren: Der Export ist jetzt „Pausiert“." in response.content.decode()


def test_export_action_and_start_form_in_german(client):
    products = ProductFactory.create_batch(5)
    changelist = client.get("/admin/shop/product/", **GERMAN).content.decode()
    assert "exportieren (product)</option>" in changelist
    response = client.post(
        "/admin/shop/product/",
        {
            "action": f"{ACTION_PREFIX}product",
            "_selected_action": [p.pk for p in products[:2]],
            "index": 0,
        },
        **GERMAN,
    )
    html = response.content.decode()
    assert "2 ausgewählte Zeilen werden vom Dienst <strong>product</strong> exportiert" in html
    assert "Der Export läuft im Hintergrund" in html
    for label in ("Format:", "Felder:", "Komprimierung:"):
        assert f">{label}</label>" in html, label
    assert 'value="Export starten"' in html
    assert "&rsaquo; Exportieren" in html


def test_javascript_catalog_has_the_german_texts_of_progress_js(client):
    response = client.get(CATALOG, **GERMAN)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    script = response.content.decode()
    for english, german in [
        ("Running", "L\\u00e4uft"),
        ("Paused", "Pausiert"),
        ("%(rate)s rows/s", "%(rate)s Zeilen/s"),
        ("The status could not be read (%(error)s); retrying.", "neuer Versuch."),
    ]:
        assert json.dumps(english) in script, english
        assert german in script, german
    # Only this package's djangojs domain: the admin's own strings are not repeated.
    assert "Kalender" not in script


def test_javascript_catalog_is_for_staff_only():
    response = Client().get(CATALOG)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_api_contract_strings_stay_english_in_german(api):
    body = api.get("/api/report/product/status", **GERMAN).json()
    assert body["status_name"] == "Ready"
    listed = {item["service"]: item for item in api.get("/api/report/", **GERMAN).json()}
    assert listed["product"]["status_name"] == "Ready"
    start()
    assert api.get("/api/report/product/status", **GERMAN).json()["status_name"] == "Starting"
    with translation.override("de"):
        assert contract_status_names() == STATUS_NAMES
        assert STATUS_NAMES[Status.RUNNING] == "Running"
        assert str(Status.RUNNING.label) == "Läuft"


def test_api_details_in_german_and_unchanged_in_english(api):
    german = api.get("/api/report/product/download", **GERMAN)
    assert german.status_code == 404
    assert german.json() == {
        "detail": "Kein fertiger Export zum Herunterladen.",
        "type": "not_found",
    }
    english = api.get("/api/report/product/download")
    assert english.content == b'{"detail":"No finished export to download.","type":"not_found"}'


def test_command_help_and_messages_in_german(capsys):
    with translation.override("de"):
        parser = Command().create_parser("manage.py", "report_export")
        text = parser.format_help()
        assert "Exporte starten, verfolgen, pausieren, fortsetzen" in text
        assert "Einen Export starten" in text
        start_help = parser._subparsers._group_actions[0].choices["start"].format_help()
        assert "Eines der Formate des Dienstes." in start_help
        call_command("report_export", "history", "product")
    assert "Noch keine Exporte von product." in capsys.readouterr().out
    with translation.override("en"):
        call_command("report_export", "history", "product")
    assert "No exports of product yet." in capsys.readouterr().out
