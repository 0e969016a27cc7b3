"""Which services a caller may read, and a short-lived per-process memory of the answers.

``user.has_perm()`` costs two queries per request with Django's ``ModelBackend`` (the user's
and their groups' permissions); its per-request ``_perm_cache`` does not outlive the request.
A status poll is the API's busiest request, so a granted read permission is remembered per
process for ``PERMISSION_CACHE_SECONDS``:

* only grants are remembered: a permission granted now is honoured on the next request;
* a revoked permission (or a lost superuser flag) is refused at most that many seconds
  later in every process, and at once in the process that made the change through Django's
  models (the signals below forget what they may have changed);
* ``is_active`` and the session are checked on every request, as before: a deactivated or
  deleted user, or a changed password, is refused at once;
* ``0`` turns the memory off.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import BasePermission

from django_report_export.conf import export_settings
from django_report_export.registry import ExportService

#: Beyond this many remembered users, the memory starts again empty.
MAX_USERS = 10_000

_clock = time.monotonic

UserKey = tuple[str, Any]
# user -> {service name: monotonic time until which its read grant is trusted}
_grants: dict[UserKey, dict[str, float]] = {}


def _user_key(user: Any) -> UserKey:
    return (user._meta.label_lower, user.pk)


def may_read(service: ExportService, user: Any) -> bool:
    """``service.has_permission(user)``, with grants remembered for a few seconds."""
    if not (user and user.is_authenticated and user.is_active) or user.pk is None:
        return service.has_permission(user)
    lifetime = export_settings.PERMISSION_CACHE_SECONDS
    if not lifetime:
        return service.has_permission(user)
    key = _user_key(user)
    now = _clock()
    # By service, not permission: a service may override has_permission().
    if _grants.get(key, {}).get(service.name, 0.0) > now:
        return True
    if not service.has_permission(user):
        return False
    if len(_grants) >= MAX_USERS and key not in _grants:
        _grants.clear()
    _grants.setdefault(key, {})[service.name] = now + lifetime
    return True


def forget_grants(user: Any = None) -> None:
    """Forget the remembered grants of ``user``, or of everyone."""
    if user is None:
        _grants.clear()
    else:
        _grants.pop(_user_key(user), None)


def _forget_now_and_on_commit(using: str | None, user: Any = None) -> None:
    # Again after the commit: until then another thread may still read, and remember, the
    # grant being revoked.
    forget_grants(user)
    transaction.on_commit(lambda: forget_grants(user), using=using)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
@receiver(post_delete, sender=settings.AUTH_USER_MODEL)
def _user_changed(*, instance: Any, using: str, **kwargs: Any) -> None:
    _forget_now_and_on_commit(using, instance)  # is_superuser may have changed; a reused pk is new


@receiver(post_delete, sender="auth.Group")
@receiver(post_delete, sender="auth.Permission")
def _grant_source_deleted(*, using: str, **kwargs: Any) -> None:
    _forget_now_and_on_commit(using)


GRANT_MODELS = ("auth.permission", "auth.group")


@receiver(m2m_changed)
def _relation_changed(*, instance: Any, model: Any, using: str, **kwargs: Any) -> None:
    # A user's permissions or groups, or a group's permissions, from either side: rare
    # enough to forget everything.
    labels = (type(instance)._meta.label_lower, model._meta.label_lower)
    if any(label in GRANT_MODELS for label in labels):
        _forget_now_and_on_commit(using)


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("REPORT_EXPORT", "AUTHENTICATION_BACKENDS", "AUTH_USER_MODEL"):
        forget_grants()


class ServiceReadPermission(BasePermission):
    """Grants a service's endpoints to users holding the service's read permission.

    The view sets ``view.service`` before permissions are checked; the listing (no service)
    needs only an authenticated user and shows what that user may read.
    """

    message = _("You do not have the read permission for this service.")

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        service = getattr(view, "service", None)
        return service is None or may_read(service, user)
