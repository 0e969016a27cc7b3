"""Settings of the demo shop, also used by the test suite.

SQLite by default; ``DATABASE_URL`` (``postgres://...``, ``mysql://...``) switches to PostgreSQL
or MariaDB/MySQL.
``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) serves django-rq and the status store.
``REPLICA_DATABASE_URL`` adds a ``replica`` database (``REPORT_EXPORT["DATABASE_ALIAS"]``).
Export files live in the private ``exports`` storage (``REPORT_EXPORT["STORAGE"]``): the folder
``EXPORT_STORAGE_DIR`` (default ``var/exports``), or an S3 bucket with
``EXPORT_STORAGE_S3_BUCKET``; see docs/deployment.md. ``REPORT_EXPORT_DB_PROBE_DIR`` installs the
test suite's database probe.
"""

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DEMO_VAR_DIR", BASE_DIR / "var"))  # databases, files, logs
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-shop-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "django_rq",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from the demo, not a CDN
    "django_report_export",
    "testproject.shop",
]
if os.environ.get("REPORT_EXPORT_DB_PROBE_DIR"):
    # The worker processes of tests/test_processes.py log which process runs each query and
    # which process opened its connection (tests/support/dbprobe.py).
    INSTALLED_APPS.append("tests.support.dbprobe.DatabaseProbe")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The admin, the API's messages and progress.js in the browser's language (Accept-Language).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "testproject" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'demo.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, also under test, so that worker processes see what the tests write.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # MariaDB/MySQL (mysqlclient; docs/deployment.md, "MariaDB and MySQL"): 4-byte UTF-8, and
    # READ COMMITTED, so an export's chunks, each its own query, see rows other processes
    # committed meanwhile, as on PostgreSQL (InnoDB's default, REPEATABLE READ, would be the
    # same for autocommit reads, but not inside a transaction).
    DATABASES["default"]["OPTIONS"] = {
        "charset": "utf8mb4",
        "isolation_level": "read committed",
    }
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}

if os.environ.get("REPLICA_DATABASE_URL"):
    # A read replica for the export queries: REPORT_EXPORT_SETTINGS='{"DATABASE_ALIAS": "replica"}'.
    # Nothing is ever written to it, and under test it mirrors "default" (no test database).
    DATABASES["replica"] = dj_database_url.parse(os.environ["REPLICA_DATABASE_URL"])
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "Europe/Berlin"
LANGUAGE_CODE = "en-us"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]

STATIC_URL = "static/"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


def s3_export_storage(env: Mapping[str, str]) -> dict[str, Any]:
    """The ``exports`` storage on S3 (django-storages) from ``EXPORT_STORAGE_S3_*`` variables.

    ``EXPORT_STORAGE_S3_BUCKET`` (required), ``_ENDPOINT`` (an S3-compatible server; AWS when
    empty), ``_REGION``, ``_ACCESS_KEY`` and ``_SECRET_KEY`` (boto3's own lookup when empty)
    and ``_URL_EXPIRE``: seconds a pre-signed download URL stays valid (default 300).
    """
    endpoint = env.get("EXPORT_STORAGE_S3_ENDPOINT") or None
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env["EXPORT_STORAGE_S3_BUCKET"],
            "endpoint_url": endpoint,
            "region_name": env.get("EXPORT_STORAGE_S3_REGION") or "us-east-1",
            "access_key": env.get("EXPORT_STORAGE_S3_ACCESS_KEY") or None,
            "secret_key": env.get("EXPORT_STORAGE_S3_SECRET_KEY") or None,
            "addressing_style": "path" if endpoint else None,
            "signature_version": "s3v4",
            "querystring_auth": True,
            "querystring_expire": int(env.get("EXPORT_STORAGE_S3_URL_EXPIRE") or 300),
            # A part read back to publish the file spills to a temporary file past 16 MiB.
            "max_memory_size": 16 * 1024 * 1024,
        },
    }


# Export files are customer data: never under MEDIA_ROOT, which the web server serves to
# anyone holding a link (system check W001).
if os.environ.get("EXPORT_STORAGE_S3_BUCKET"):
    STORAGES["exports"] = s3_export_storage(os.environ)
else:
    STORAGES["exports"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": Path(os.environ.get("EXPORT_STORAGE_DIR", VAR_DIR / "exports"))},
    }

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "django-report-export demo shop",
    "DESCRIPTION": "Asynchronous data exports of the demo shop's services.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One path per export service, with its own formats, fields and filters.
    "DEFAULT_GENERATOR_CLASS": "django_report_export.api.schema.ReportSchemaGenerator",
}

# REPORT_EXPORT_SETTINGS (JSON) overrides keys, e.g. '{"CHUNK_SIZE": 1000}'.
REPORT_EXPORT = {
    "QUEUE": "default",
    "STORAGE": "exports",
    # The host of the links in notification emails (and webhooks): the runserver's.
    "BASE_URL": os.environ.get("REPORT_EXPORT_BASE_URL", "http://127.0.0.1:8000"),
    **json.loads(os.environ.get("REPORT_EXPORT_SETTINGS", "{}")),
}

# "Your export is ready" (start with notify=email) is printed by the worker, not sent.
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = "exports@shop.example"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_report_export": {"handlers": ["console"], "level": "INFO"}},
}
