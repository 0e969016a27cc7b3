"""Ports and readiness of the servers the tests start (gunicorn, moto's S3, PostgreSQL replicas)."""

from __future__ import annotations

import socket
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
