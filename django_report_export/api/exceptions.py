"""API errors: every failure becomes JSON ``{"detail": ..., "type": ...}`` with a stable type.

``exception_handler`` maps the package's runtime errors (``..exceptions``) and DRF's own onto
the contract's status codes; it is the report views' handler whatever the host project's
``EXCEPTION_HANDLER`` is, so a shop's custom handler cannot change the contract.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import SuspiciousOperation
from django.http import Http404
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from redis.exceptions import RedisError
from rest_framework import exceptions, status
from rest_framework.response import Response

from django_report_export import exceptions as errors
from django_report_export.conf import export_settings


class InternalError(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = _("Redis did not return a status.")
    default_code = "internalError"


class ServiceCurrentlyUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    # The text of SPEC §4, not translated: clients match it.
    default_detail = "Service currently unavailable"
    default_code = "Service currently unavailable"


class UnknownServiceError(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("Unknown service.")
    default_code = "unknown_service"


class InvalidParameters(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("Invalid query parameters.")
    default_code = "invalid"

    def __init__(self, detail: str, errors: dict[str, list[str]]) -> None:
        super().__init__(detail)
        self.errors = errors


class NotFound(exceptions.NotFound):
    default_code = "not_found"


def translate(exc: Exception) -> Exception:
    """The API exception standing for a runtime error of the package."""
    if isinstance(exc, errors.QueueUnavailable):
        return ServiceCurrentlyUnavailable(f"Service currently unavailable: {exc.message}")
    if isinstance(exc, errors.StatusUnavailable):
        return InternalError(exc.message)
    if isinstance(exc, RedisError):
        return InternalError(gettext("Redis cannot be reached: %(error)s") % {"error": exc})
    if isinstance(exc, errors.UnknownService):
        return UnknownServiceError(exc.message)
    if isinstance(exc, errors.InvalidExportRequest):
        return InvalidParameters(exc.message, exc.errors)
    if isinstance(exc, errors.NoExportInState):
        return NotFound(exc.message)
    if isinstance(exc, Http404):
        return NotFound(str(exc) or None)
    if isinstance(exc, SuspiciousOperation):
        # Django's request limits (too many parameters, too large a body).
        return exceptions.ParseError(gettext("The request was refused: %(error)s") % {"error": exc})
    return exc


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    exc = translate(exc)
    if not isinstance(exc, exceptions.APIException):
        return None
    headers: dict[str, str] = {}
    view = context.get("view")
    request = context.get("request")
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        exc.status_code = status.HTTP_401_UNAUTHORIZED
        code = "not_authenticated"
    elif isinstance(exc, exceptions.PermissionDenied):
        exc.status_code = export_settings.PERMISSION_DENIED_STATUS
        code = "permission_denied"
    else:
        code = _code_of(exc)
    if exc.status_code == status.HTTP_401_UNAUTHORIZED and view is not None:
        headers["WWW-Authenticate"] = view.get_authenticate_header(request)
    wait = getattr(exc, "wait", None)
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        headers["Retry-After"] = str(int(wait))
    body: dict[str, Any] = {"detail": _detail_text(exc.detail), "type": code}
    if isinstance(exc, InvalidParameters):
        body["errors"] = exc.errors
    elif isinstance(exc, exceptions.ValidationError):
        body["errors"] = exc.detail
    return Response(body, status=exc.status_code, headers=headers)


def _code_of(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return str(exc.default_code)


def _detail_text(detail: Any) -> str:
    if isinstance(detail, list):
        return " ".join(_detail_text(item) for item in detail)
    if isinstance(detail, dict):
        return " ".join(f"{key}: {_detail_text(value)}" for key, value in detail.items())
    return str(detail)
