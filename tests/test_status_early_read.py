"""The status endpoint sends its Redis read before authenticating (``status.EarlyRead``):
refused requests leave the connection in step, a dropped connection falls back to a usual
read, and per-user slots still read the caller's own slot."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from django_report_export.connection import get_redis
from django_report_export.models import Status
from testproject.shop.factories import ProductFactory

from .support.users import make_user

pytestmark = pytest.mark.django_db(transaction=True)


class DroppingProxy:
    """A TCP proxy to Redis that, once armed, closes the next client connection carrying
    ``HGETALL`` without passing it on: a connection Redis dropped while a command was on
    its way."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.armed = False
        self.dropped = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._spawn(self._pipe, client, upstream, True)
            self._spawn(self._pipe, upstream, client, False)

    def _pipe(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client and self.armed and b"HGETALL" in data:
                    self.armed = False
                    self.dropped += 1
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def dropping_proxy(settings) -> Iterator[DroppingProxy]:
    url = urlsplit(settings.RQ_QUEUES[settings.REPORT_EXPORT.get("QUEUE", "default")]["URL"])
    proxy = DroppingProxy((url.hostname or "127.0.0.1", url.port or 6379))
    proxied = url._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "proxied": {"URL": proxied}}
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "QUEUE": "proxied"}
    yield proxy
    proxy.close()


def test_refused_status_requests_leave_the_connection_in_step(api, worker):
    ProductFactory.create_batch(5)
    redis = get_redis()
    connection_id = redis.client_id()
    stranger = APIClient()  # a session, but no read permission: 401 by default (SPEC)
    stranger.force_login(make_user("stranger"))
    wrong_password = APIClient()
    wrong_password.credentials(
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"boss:wrong").decode()
    )
    for client in [stranger, wrong_password, APIClient()] * 2:
        # The first two send their read early and are refused before receiving it.
        assert client.get("/api/report/product/status").status_code == 401
    # Each unreceived reply was drained, and the connection went back to the pool: Redis
    # still serves the app on the connection it had (a dropped, kept or undrained one
    # would have made the pool open another).
    assert redis.client_id() == connection_id
    started = api.post("/api/report/product/start?format=csv")
    assert started.status_code == 202
    assert started.json()["status"] == Status.STARTING
    worker()
    assert stranger.get("/api/report/product/status").status_code == 401
    body = api.get("/api/report/product/status").json()
    assert (body["status"], body["processed"], body["total"]) == (Status.FINISHED, 5, 5)
    assert api.get("/api/report/product/download").status_code == 200
    assert redis.client_id() == connection_id


def test_a_dropped_early_read_falls_back_to_a_usual_read(api, worker, dropping_proxy):
    ProductFactory.create_batch(4)
    assert api.post("/api/report/product/start?format=json").status_code == 202
    worker()
    dropping_proxy.armed = True
    response = api.get("/api/report/product/status")
    assert dropping_proxy.dropped == 1
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["processed"]) == (Status.FINISHED, 4)


def test_per_user_slots_read_the_callers_own_slot(settings, worker):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "SLOT_SCOPE": "user"}
    ProductFactory.create_batch(3)
    clients = {}
    for name in ("ann", "bob"):
        clients[name] = APIClient()
        clients[name].force_login(make_user(name, is_staff=True, is_superuser=True))
    assert clients["ann"].post("/api/report/product/start?format=csv").status_code == 202
    worker()
    ann = clients["ann"].get("/api/report/product/status").json()
    bob = clients["bob"].get("/api/report/product/status").json()
    assert (ann["status"], ann["processed"]) == (Status.FINISHED, 3)
    assert (bob["status"], bob["id"]) == (Status.READY, None)
