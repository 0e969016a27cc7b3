"""Settings of the test suite: the demo shop's, plus models the tests need that a shop would
not ship (``tests.keyed``: primary keys of the types the demo does not use). Worker processes
that tests start run the demo shop's own settings."""

from testproject.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.support.keyed"]  # noqa: F405
