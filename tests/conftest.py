"""Fixtures shared by the suite: a real Redis (refusing one that holds foreign data), burst
RQ workers in this process, users with and without a service's read permission."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django_rq
import django_rq.settings
import pytest
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis import Redis
from rest_framework.test import APIClient

from django_report_export.connection import get_redis
from testproject.settings import s3_export_storage

from .support.burst import run_worker
from .support.s3server import S3_URL_EXPIRE, S3Server
from .support.users import make_user

OWN_KEY_PREFIXES = (b"report_export:", b"rq:")


@receiver(setting_changed)
def reread_rq_queues(setting: str, value: Any, **kwargs: Any) -> None:
    """django-rq 3.0 reads ``RQ_QUEUES`` once, when it is imported (4.x reads it at each
    call): tests that point a queue at another Redis tell it there too."""
    rq_settings = vars(django_rq.settings)
    if setting != "RQ_QUEUES" or not isinstance(rq_settings.get("QUEUES"), dict):
        return
    django_rq.settings.QUEUES = value  # type: ignore[attr-defined]
    rq_settings["QUEUES_LIST"][:] = [
        {"name": name, "connection_config": config} for name, config in sorted(value.items())
    ]
    rq_settings["QUEUES_MAP"].clear()
    rq_settings["QUEUES_MAP"].update({name: i for i, name in enumerate(sorted(value))})


@pytest.fixture(scope="session")
def redis_server() -> Redis:
    conn = get_redis()
    try:
        conn.ping()
    except Exception as exc:
        pytest.exit(f"Redis does not answer ({exc}); run the suite with scripts/test.", 3)
    foreign = [k for k in conn.scan_iter(count=1000) if not k.startswith(OWN_KEY_PREFIXES)]
    if foreign:
        pytest.exit(
            f"Refusing to run: the Redis database holds {len(foreign)} keys that are not "
            "this suite's (e.g. {foreign[0]!r}). Point REDIS_URL at an empty database.",
            3,
        )
    return conn


@pytest.fixture(scope="session", autouse=True)
def flush_postgres_by_delete() -> Iterator[None]:
    """Empty PostgreSQL's tables after a transactional test with ``DELETE`` instead of
    ``TRUNCATE``: truncating the project's tables takes about 250 ms on a small disk, most of
    a small test's time, where deleting the few rows a test leaves takes a millisecond.
    Django's foreign keys on PostgreSQL are deferred, so the order of the deletes is free."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(
        self: DatabaseOperations,
        style: Any,
        tables: Any,
        *,
        reset_sequences: bool = False,
        allow_cascade: bool = False,
    ) -> list[str]:
        if reset_sequences or allow_cascade:
            return truncate(
                self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        return [f"DELETE FROM {self.quote_name(table)};" for table in tables]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "sql_flush", sql_flush)
        yield


#: Rows that migrations make (``post_migrate``) and no test changes: flushing keeps them.
KEPT_TABLES = frozenset({"django_content_type", "auth_permission"})


@pytest.fixture(scope="session", autouse=True)
def flush_keeps_content_types_and_permissions() -> Iterator[None]:
    """Empty every table but the content types and permissions after a transactional test,
    and do not send ``post_migrate``, which re-created both: 0.1 s of each transactional
    test, most of a small test's time (the receivers are contenttypes' and auth's only, so
    the rows they made at the start are still the ones they would make)."""
    from django.core.management.commands import flush

    def sql_flush(
        style: Any, connection: Any, reset_sequences: bool = True, allow_cascade: bool = False
    ) -> list[str]:
        tables = connection.introspection.django_table_names(
            only_existing=True, include_views=False
        )
        return connection.ops.sql_flush(
            style,
            [table for table in tables if table not in KEPT_TABLES],
            reset_sequences=reset_sequences,
            allow_cascade=allow_cascade,
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flush, "sql_flush", sql_flush)
        patch.setattr(flush, "emit_post_migrate_signal", lambda *args, **kwargs: None)
        yield


@pytest.fixture(scope="session", autouse=True)
def mariadb_time_zones() -> None:
    """Stop at once, saying why, when MariaDB/MySQL lacks its time zone tables: Django's
    date lookups and the admin's date hierarchy (``CONVERT_TZ``) would fail test by test."""
    from django.db import connection

    if connection.vendor != "mysql":
        return
    params = connection.get_connection_params()
    params.pop("database", None)  # the server's tables, whichever database is under test
    server = connection.Database.connect(**params)
    try:
        cursor = server.cursor()
        cursor.execute("SELECT CONVERT_TZ('2000-01-01', 'UTC', 'Europe/Berlin')")
        loaded = cursor.fetchone()[0] is not None
    finally:
        server.close()
    if not loaded:
        pytest.exit(
            "MariaDB has no time zone tables: mariadb-tzinfo-to-sql /usr/share/zoneinfo | "
            "mariadb -uroot mysql (scripts/_services.sh ensure_mariadb does it).",
            3,
        )


@pytest.fixture(autouse=True)
def redis_db(redis_server: Redis) -> Iterator[Redis]:
    redis_server.flushdb()
    yield redis_server
    redis_server.flushdb()


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Any) -> Any:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def export_root(settings: Any, tmp_path: Any) -> Path:
    """The folder of the demo's private ``exports`` storage, this test's own (outside
    ``media_root``); worker processes get it as ``EXPORT_STORAGE_DIR``."""
    root = tmp_path / "exports"
    exports = settings.STORAGES.get("exports", {})
    if exports.get("BACKEND") == "django.core.files.storage.FileSystemStorage":
        options = {**exports.get("OPTIONS", {}), "location": root}
        settings.STORAGES = {**settings.STORAGES, "exports": {**exports, "OPTIONS": options}}
    return root


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def worker() -> Any:
    return run_worker


@pytest.fixture
def admin_user_(transactional_db: Any) -> Any:
    return make_user("boss", is_staff=True, is_superuser=True)


@pytest.fixture
def api(admin_user_: Any) -> APIClient:
    client = APIClient()
    client.force_login(admin_user_)
    return client


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: Any) -> Iterator[S3Server]:
    """moto's S3 server on a free port of ``S3_SERVER_PORTS``, with an empty bucket."""
    missing = [name for name in ("storages", "boto3", "moto") if not importlib.util.find_spec(name)]
    if missing:
        reason = f"{', '.join(missing)} not installed (pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI=true, and the object storage tests cannot run: {reason}")
        pytest.skip(reason)
    with S3Server(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        print(f"moto S3 server :{server.port}, up in {server.startup_seconds:.1f} s")
        yield server


@pytest.fixture
def exports_storage(s3: S3Server, settings: Any) -> dict[str, str]:
    """``STORAGE = "exports"``, the S3 alias, here and (the variables returned) in workers."""
    env = s3.env(EXPORT_STORAGE_S3_URL_EXPIRE=str(S3_URL_EXPIRE))
    settings.STORAGES = {**settings.STORAGES, "exports": s3_export_storage(env)}
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "STORAGE": "exports"}
    return env
