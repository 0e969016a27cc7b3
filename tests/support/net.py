"""Ports and readiness of the servers the tests start (gunicorn, moto's S3, PostgreSQL replicas)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

# Each server the tests start listens on 127.0.0.1 on a port of its own range, so that two
# kinds never take each other's ports (test_replica.py's API server has 8300-8399). Within a
# range a server takes a free port, and another on a collision with a parallel test run.
#: gunicorn serving the demo (servers.LiveServer).
HTTP_SERVER_PORTS = range(8200, 8300)
#: moto's S3 server (s3server.S3Server).
S3_SERVER_PORTS = range(55300, 55400)
#: The private PostgreSQL primary and standby (pgreplica.ReplicaPair).
REPLICA_PORTS = range(55400, 55500)
#: The webhook receivers of tests/test_notifications.py (receiver.Receiver).
RECEIVER_PORTS = range(55500, 55600)


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_http(
    port: int, path: str, alive: Callable[[], bool], timeout: float = 30, interval: float = 0.05
) -> bool:
    """True once ``GET path`` on 127.0.0.1:``port`` answers HTTP; False if the server stopped
    being ``alive()`` first (its port was taken) or ``timeout`` passed."""
    request = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(request)
                if conn.recv(12).startswith(b"HTTP/1."):
                    return True
        except OSError:
            pass
        time.sleep(interval)
    return False


#: A TCP proxy in front of the test database (``DatabaseProxy``), for database outages.
DATABASE_PROXY_PORTS = range(55500, 55600)


class DatabaseProxy:
    """Forwards 127.0.0.1:``port`` to the database at ``target``. ``cut()`` drops every
    connection and refuses new ones (the database is away), ``restore()`` listens again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = next(port for port in DATABASE_PROXY_PORTS if port_is_free(port))
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()

    def restore(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        with self.lock:
            connections, self.connections = self.connections, []
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for conn in (source, sink):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
