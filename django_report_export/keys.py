"""Primary keys in JSON: checkpoints, shard bounds and the admin's selected rows.

A key goes into JSON as the value the model's primary-key field prepares for the database
(``get_prep_value``): integers as JSON integers (exact at any size in PostgreSQL's ``jsonb``,
in SQLite's text and in Python's ``json``), strings as they are, and any other value (a
``UUID``, a date) as its text. It comes back through the same field (``to_python``), so the
key is again the value Django itself would use. Comparisons with a stored key (``pk > key``)
are left to the database, in its own order and collation, never done in Python.
"""

from __future__ import annotations

from typing import Any

from django.db import models


def key_field(model: type[models.Model]) -> models.Field[Any, Any]:
    pk = model._meta.pk
    assert pk is not None, f"{model.__name__} has no primary key"
    return pk


def key_to_json(model: type[models.Model], key: Any) -> int | str | None:
    """The JSON form of a primary key of ``model`` (``None`` stays ``None``)."""
    if key is None:
        return None
    field = key_field(model)
    value = field.get_prep_value(field.to_python(key))
    if isinstance(value, int | str) and not isinstance(value, bool):
        return value
    return str(value)


def key_from_json(model: type[models.Model], stored: Any) -> Any:
    """The primary key of ``model`` whose JSON form is ``stored``."""
    if stored is None:
        return None
    return key_field(model).to_python(stored)
