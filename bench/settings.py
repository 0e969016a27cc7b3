"""Settings of the benchmark's processes: the demo shop's, plus the ``bench`` app and its flat
``orderRow`` service (``bench/exports.py``)."""

from testproject.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]  # noqa: F405
