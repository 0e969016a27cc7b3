"""Settings of the live servers and workers some tests start: the demo shop's and the suite's
``tests.support.keyed`` (its flat ``orderRow`` service), with a cheap password hasher so that
HTTP Basic authentication costs microseconds instead of the PBKDF2 iterations meant for
production (the tests' users are created with it too)."""

from testproject.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The suite's tests-only app: its flat ``orderRow`` service is exported by workers too.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.support.keyed"]  # noqa: F405
