"""Every row of the seed's error tables, and the contract's additions (SPEC §4)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from redis import Redis
from rest_framework.test import APIClient

from django_report_export.models import ReportExport, Status

from .support.users import make_user

pytestmark = pytest.mark.django_db(transaction=True)

SERVICE_ENDPOINTS = [
    ("get", "status"),
    ("post", "start"),
    ("post", "pause"),
    ("post", "resume"),
    ("delete", "cancel"),
    ("post", "retry"),
    ("get", "download"),
    ("get", "history"),
]
ALL_ENDPOINTS = [("get", "/api/report/")] + [
    (method, f"/api/report/product/{action}") for method, action in SERVICE_ENDPOINTS
]


def call(client: APIClient, method: str, url: str, **kwargs):
    if url.endswith("/start") and "format" not in url:
        url += "?format=csv"
    return getattr(client, method)(url, **kwargs)


# --- 401 --------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "url"), ALL_ENDPOINTS)
def test_not_logged_in_is_401_not_authenticated(anon, method, url):
    response = call(anon, method, url)
    assert response.status_code == 401
    assert response.json()["type"] == "not_authenticated"
    assert response["WWW-Authenticate"]


@pytest.mark.parametrize(("method", "url"), ALL_ENDPOINTS[1:])
def test_logged_in_without_read_permission_is_401_permission_denied(method, url):
    client = APIClient()
    client.force_login(make_user("clerk", "shop.view_order"))
    response = call(client, method, url)
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "permission_denied"
    assert "permission" in body["detail"]
    assert response["WWW-Authenticate"]


def test_permission_denied_status_can_be_403(settings):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "PERMISSION_DENIED_STATUS": 403}
    client = APIClient()
    client.force_login(make_user("clerk"))
    response = client.get("/api/report/product/status")
    assert response.status_code == 403
    assert response.json()["type"] == "permission_denied"


def test_wrong_basic_credentials_are_401_with_basic_challenge():
    make_user("clerk", "shop.view_product")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic Y2xlcms6d3Jvbmc=")  # clerk:wrong
    response = client.get("/api/report/product/status")
    assert response.status_code == 401
    assert response.json()["type"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Basic")


def test_read_permission_of_the_service_is_enough():
    client = APIClient()
    client.force_login(make_user("clerk", "shop.view_product"))
    assert client.get("/api/report/product/status").status_code == 200
    assert client.get("/api/report/order/status").status_code == 401


# --- 400 --------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "action"), SERVICE_ENDPOINTS)
def test_unknown_service_is_400(api, method, action):
    response = call(api, method, f"/api/report/noSuchThing/{action}")
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "unknown_service"
    assert "noSuchThing" in body["detail"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("", "format"),
        ("?format=", "format"),
        ("?format=xml", "format"),  # product is json/csv only
        ("?format=pdf", "format"),
        ("?format=csv&format=json", "format"),
        ("?format=csv&frmat=json", "frmat"),
        ("?format=csv&fields=sku,colour", "fields"),
        ("?format=csv&fields=sku,sku", "fields"),
        ("?format=csv&compression=zip", "compression"),
        ("?format=csv&price_min=cheap", "price_min"),
        ("?format=csv&category=abc", "category"),
        ("?format=csv&is_active=perhaps", "is_active"),
    ],
)
def test_bad_start_parameters_are_400_naming_the_parameter(api, query, parameter):
    response = api.post(f"/api/report/product/start{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["type"] == "invalid"
    assert parameter in body["errors"]
    assert parameter in body["detail"]
    assert not ReportExport.objects.exists()


def test_format_query_parameter_is_not_taken_by_drf(api):
    response = api.get("/api/report/product/status?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


# --- 404 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "action", "detail"),
    [
        ("post", "pause", "not running"),
        ("post", "resume", "not been paused"),
        ("delete", "cancel", "not running"),
        ("get", "download", "No finished export"),
    ],
)
def test_nothing_in_state_is_404(api, method, action, detail):
    response = getattr(api, method)(f"/api/report/product/{action}")
    assert response.status_code == 404
    body = response.json()
    assert body["type"] == "not_found"
    assert detail in body["detail"]


def test_resume_of_a_running_export_is_404_and_pause_of_a_paused_one_too(api):
    assert api.post("/api/report/product/start?format=csv").status_code == 202
    assert api.post("/api/report/product/resume").status_code == 404
    assert api.post("/api/report/product/pause").status_code == 200
    assert api.post("/api/report/product/pause").status_code == 404
    assert api.get("/api/report/product/download").status_code == 404


# --- 503 --------------------------------------------------------------------------------


@pytest.fixture
def redis_refusing(settings):
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "gone": {"URL": "redis://127.0.0.1:1/0"}}
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "QUEUE": "gone"}


@pytest.fixture
def redis_silent(settings):
    """A TCP peer that accepts connections and never answers: a stalled Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "stalled": {"URL": f"redis://127.0.0.1:{port}/0"}}
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "QUEUE": "stalled", "REDIS_TIMEOUT": 0.5}
    yield
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize(("method", "url"), ALL_ENDPOINTS)
def test_redis_unreachable_is_503_internal_error(api, redis_refusing, method, url):
    response = call(api, method, url)
    assert response.status_code == 503
    assert response.json()["type"] == "internalError"


@pytest.mark.slow  # waits out a timeout per endpoint
@pytest.mark.parametrize(("method", "url"), ALL_ENDPOINTS)
def test_stalled_redis_is_503_within_the_timeout(api, redis_silent, method, url):
    began = time.monotonic()
    response = call(api, method, url)
    elapsed = time.monotonic() - began
    assert response.status_code == 503
    assert response.json()["type"] == "internalError"
    # REDIS_TIMEOUT 0.5 s, one retry: two timeouts at most per call.
    assert elapsed < 2.5


@pytest.fixture
def acl_user(redis_db: Redis, settings):
    """Point the app at Redis as a user with the given ACL rules; removed afterwards."""
    created: list[str] = []
    base_url = settings.RQ_QUEUES["default"]["URL"]

    def make(name: str, *rules: str) -> None:
        redis_db.acl_setuser(name, enabled=True, passwords=["+pw"], reset_keys=True)
        redis_db.execute_command("ACL", "SETUSER", name, *rules)
        created.append(name)
        url = base_url.replace("redis://", f"redis://{name}:pw@", 1)
        settings.RQ_QUEUES = {**settings.RQ_QUEUES, name: {"URL": url}}
        settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "QUEUE": name}

    yield make
    for name in created:
        redis_db.acl_deluser(name)


def test_status_write_refused_is_503_internal_error(api, acl_user):
    acl_user("reader", "~*", "+@all", "-@write", "-evalsha", "-eval", "-script")
    response = api.post("/api/report/product/start?format=csv")
    assert response.status_code == 503
    assert response.json()["type"] == "internalError"


def test_job_that_cannot_be_queued_is_503_service_currently_unavailable(api, acl_user):
    # May write the status keys, but nothing of RQ's.
    acl_user("statusonly", "~report_export:*", "+@all")
    response = api.post("/api/report/product/start?format=csv")
    assert response.status_code == 503
    body = response.json()
    assert body["type"] == "Service currently unavailable"
    assert "could not be queued" in body["detail"]
    export = ReportExport.objects.get()
    assert export.status == Status.ERROR
    status = api.get("/api/report/product/status").json()
    assert status["status"] == Status.ERROR
    assert "could not be queued" in status["error"]
