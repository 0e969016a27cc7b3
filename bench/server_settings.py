"""Settings of the status-endpoint load test's server: the benchmark's, plus a constant view to
compare with (``bench/urls.py``), and never in debug mode."""

from bench.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "bench.urls"
LOGGING = {"version": 1, "disable_existing_loggers": False}

# As a production server runs: persistent database connections (the demo opens one a request).
DATABASES["default"]["CONN_MAX_AGE"] = 600  # noqa: F405
