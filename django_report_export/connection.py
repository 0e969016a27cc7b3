"""The Redis connection shared by the status store and the queue.

It is the connection of the django-rq queue named by ``QUEUE``, rebuilt with bounded socket
timeouts (``REDIS_TIMEOUT``) and a single retry, so an unreachable or stalled Redis turns into
a ``RedisError`` within seconds instead of a hung request.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

import django_rq
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis import ConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from rq import Queue

from django_report_export.conf import export_settings

_lock = threading.Lock()
#: The connection of the current settings, made on first use: every status request asks
#: for it. Forgotten when ``RQ_QUEUES`` or ``REPORT_EXPORT`` change.
_current: Redis | None = None


def get_redis() -> Redis:
    global _current
    conn = _current
    if conn is not None:
        return conn
    with _lock:
        if _current is None:
            _current = _bounded_copy(
                django_rq.get_connection(export_settings.QUEUE),
                float(export_settings.REDIS_TIMEOUT),
            )
        return _current


def _bounded_copy(conn: Redis, timeout: float) -> Redis:
    pool = conn.connection_pool
    kwargs: dict[str, Any] = dict(pool.connection_kwargs)
    kwargs.update(
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        # redis-py 5 retries only the errors named here (6 and later: the retry's own).
        retry_on_error=[RedisConnectionError],
    )
    return Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs))


#: Queue jobs at once, whatever the project's ``RQ`` commit mode: the caller learns then that
#: Redis is unreachable (``QueueUnavailable``), and the export row is already committed (the
#: views run outside request transactions). django-rq 4.0 replaced ``autocommit`` (default
#: on) by ``commit_mode``, whose default, ``"on_db_commit"``, would defer a job queued inside
#: a transaction to its commit.
_ENQUEUE_AT_ONCE: dict[str, Any] = (
    {"commit_mode": "auto"}
    if "commit_mode" in inspect.signature(django_rq.get_queue).parameters
    else {"autocommit": True}
)


def get_queue() -> Queue:
    return django_rq.get_queue(export_settings.QUEUE, connection=get_redis(), **_ENQUEUE_AT_ONCE)


@receiver(setting_changed)
def _forget_connections(*, setting: str, **kwargs: Any) -> None:
    global _current
    if setting in ("RQ_QUEUES", "REPORT_EXPORT"):
        with _lock:
            _current = None


def get_notify_queue() -> Queue:
    """The queue of the webhook and email jobs: ``NOTIFY_QUEUE``, else the export queue."""
    name = export_settings.NOTIFY_QUEUE
    if name is None or name == export_settings.QUEUE:
        return get_queue()
    # Bounded like the export queue's: a stalled Redis costs the ending export seconds at most.
    conn = _bounded_copy(django_rq.get_connection(name), float(export_settings.REDIS_TIMEOUT))
    return django_rq.get_queue(name, connection=conn, **_ENQUEUE_AT_ONCE)
