from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import BasePermission


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
        return service is None or service.has_permission(user)
