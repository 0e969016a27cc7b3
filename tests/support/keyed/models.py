"""Models keyed by texts and by integers beyond 2**53, for the tests of keys that are not the
demo shop's (its inquiries are keyed by UUIDs, everything else by 64-bit integers).

``Named`` is keyed by a text compared in a collation whose order is not Python's: ICU's root
locale on PostgreSQL (``a < A < á < b < B``, where Python has ``A < B < a < b < á``), NOCASE on
SQLite (``a < B``, where Python has ``B < a``), on MariaDB/MySQL ``utf8mb4_unicode_ci``, the
case- and accent-insensitive collation shops' tables usually have (``a = A = á < b = B``; keys
equal in it cannot both be stored).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

ENGINE = settings.DATABASES["default"]["ENGINE"]
COLLATION = {
    "django.db.backends.postgresql": "und-x-icu",
    "django.db.backends.mysql": "utf8mb4_unicode_ci",
}.get(ENGINE, "NOCASE")


class Slugged(models.Model):
    """A slug key in the database's default collation (SQLite's BINARY and PostgreSQL's C: the
    order of the code points; the test database's ``utf8mb4_unicode_ci`` on MariaDB)."""

    slug = models.SlugField(primary_key=True, max_length=80, allow_unicode=True)
    title = models.CharField(max_length=200)
    rank = models.IntegerField()

    def __str__(self) -> str:
        return self.slug


class Named(models.Model):
    name = models.CharField(primary_key=True, max_length=80, db_collation=COLLATION)
    note = models.TextField(blank=True)
    rank = models.IntegerField()

    def __str__(self) -> str:
        return self.name


class Counted(models.Model):
    """A 64-bit key whose values are beyond 2**53, where a JSON number read as a float loses
    digits."""

    id = models.BigAutoField(primary_key=True)
    label = models.CharField(max_length=200)
    rank = models.IntegerField()

    def __str__(self) -> str:
        return self.label
