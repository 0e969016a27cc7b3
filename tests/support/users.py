"""Users of the demo shop, with the permissions a test names."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission


def make_user(username: str, *perms: str, **extra: Any) -> Any:
    """A user with password ``pw`` and each ``app_label.codename`` permission of ``perms``."""
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw", **extra)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return get_user_model().objects.get(pk=user.pk)
