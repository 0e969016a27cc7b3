"""Settings of the test suite: the demo shop's, plus the models of ``tests.support.keyed``
(primary keys of the types the demo does not use), which a shop would not ship. The servers
and workers that tests start run ``tests/live_settings.py``, the demo's with a fast hasher."""

from testproject.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.support.keyed"]  # noqa: F405

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    # The suite's own inserts commit one by one; none needs to wait for the WAL's flush.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c synchronous_commit=off"  # noqa: F405
