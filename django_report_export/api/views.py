"""The report endpoints (SPEC §4) on one DRF ViewSet.

Authentication comes first (401 ``not_authenticated``), then the service (400 when unknown),
then the service's read permission (401 or 403 ``permission_denied``); each action then calls
``control`` and returns the status body.
"""

from __future__ import annotations

import builtins
import re
import uuid
from typing import Any

from django.conf import settings
from django.db import DataError
from django.utils.functional import LazyObject, empty
from django.utils.translation import gettext as _
from rest_framework import exceptions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from django_report_export import control
from django_report_export.api.exceptions import InvalidParameters, NotFound, exception_handler
from django_report_export.api.negotiation import ExportContentNegotiation
from django_report_export.api.parsers import BoundedJSONParser
from django_report_export.api.permissions import ServiceReadPermission, may_read
from django_report_export.api.renderers import ReportBrowsableAPIRenderer, start_form_serializer
from django_report_export.api.schema import document
from django_report_export.columns import column_names, describe
from django_report_export.download import download_response
from django_report_export.exceptions import ExportFileGone
from django_report_export.links import endpoint_path
from django_report_export.models import ReportExport, Status
from django_report_export.presentation import STATUS_NAMES, history_body, status_body
from django_report_export.registry import ExportService, site
from django_report_export.status import EarlyRead

#: Body keys a browser form adds that are not export parameters.
FORM_NOISE = ("csrfmiddlewaretoken", "_content", "_content_type")

#: An export id as the API writes it (and the schema describes it): a hyphenated UUID.
EXPORT_ID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def invalid(name: str, message: str) -> InvalidParameters:
    """The 400 ``invalid`` naming query parameter ``name``."""
    return InvalidParameters(f"Invalid query parameter(s): {name}.", {name: [message]})


def single_query_value(request: Request, name: str) -> str | None:
    """The one value of query parameter ``name``, ``None`` when absent; given twice is a 400."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise invalid(name, f"{name!r} may be given only once.")
    return values[0] if values else None


class HistoryPagination(PageNumberPagination):
    """Pages of 20 exports; ``page_size`` asks for 1 to 200 (more is served as 200).

    A ``page_size`` that is not a positive integer is a 400 naming it, as the schema
    describes it, rather than DRF's silent fallback to the default size.
    """

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request: Any) -> int:
        requested = single_query_value(request, self.page_size_query_param)
        if requested is None:
            return self.page_size
        if not re.fullmatch(r"[0-9]+", requested) or int(requested) < 1:
            raise invalid(self.page_size_query_param, "Give a whole number of at least 1.")
        return min(int(requested), self.max_page_size)


def unwrap_user(user: Any) -> Any:
    """The user behind Django's lazy ``request.user``, or ``user`` itself.

    Session authentication hands DRF the ``SimpleLazyObject`` of ``AuthenticationMiddleware``;
    every attribute read through it raises and catches an ``AttributeError`` inside Django, and
    the permission check and the status lookup read several. The object is the same one.
    """
    if isinstance(user, LazyObject):
        if user._wrapped is empty:
            user._setup()
        return user._wrapped
    return user


def has_credentials(request: Request) -> bool:
    """Whether ``request`` carries a session cookie or an ``Authorization`` header: only then
    is its status read sent before authentication (an anonymous caller costs Redis nothing)."""
    http = request._request  # the HttpRequest: DRF's Request reaches its attributes slowly
    return "HTTP_AUTHORIZATION" in http.META or settings.SESSION_COOKIE_NAME in http.COOKIES


@document
class ReportViewSet(viewsets.ViewSet):
    #: Marks the reporter API's views for the schema generator (``schema.is_report_view``).
    report_export_api = True
    permission_classes = [ServiceReadPermission]
    content_negotiation_class = ExportContentNegotiation
    parser_classes = [BoundedJSONParser, FormParser, MultiPartParser]
    renderer_classes = [JSONRenderer, ReportBrowsableAPIRenderer]
    pagination_class = HistoryPagination
    service: ExportService | None = None
    early_status: EarlyRead | None = None

    # --- policy hooks --------------------------------------------------------------------

    def get_exception_handler(self) -> Any:
        return exception_handler

    def get_authenticate_header(self, request: Request) -> str:
        """Always a ``WWW-Authenticate`` value, so a 401 is never turned into a 403."""
        for authenticator in self.get_authenticators():
            header = authenticator.authenticate_header(request)
            if header:
                return str(header)
        return 'Session realm="api"'

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            if self.early_status is not None:
                self.early_status.close()

    def perform_authentication(self, request: Request) -> None:
        name = self.kwargs.get("service")
        if (
            self.action == "status"
            and name is not None
            and name in site
            and has_credentials(request)
        ):
            # Redis answers while the session and the user are read from the database: one
            # wait instead of two on the API's busiest request.
            self.early_status = control.read_status_early(site.get(name))
        try:
            super().perform_authentication(request)
        except DataError:
            # Credentials the database cannot even look up (a NUL in a user name).
            raise exceptions.AuthenticationFailed(_("Invalid credentials.")) from None
        request.user = unwrap_user(request.user)

    def check_permissions(self, request: Request) -> None:
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated()
        name = self.kwargs.get("service")
        if name is not None:
            self.service = site.get(name)
        super().check_permissions(request)

    def get_serializer(self, *args: Any, **kwargs: Any) -> serializers.Serializer[Any]:
        """The browsable API's start form: the service's formats, fields and filters."""
        return start_form_serializer(self.service)(*args, **kwargs)

    # --- endpoints -----------------------------------------------------------------------

    def list(self, request: Request) -> Response:
        services = []
        for service in site:
            if not may_read(service, request.user):
                continue
            status = control.get_status(service, request.user)
            url = endpoint_path("report-status", service.name)
            services.append(
                {
                    "service": service.name,
                    "description": service.description,
                    "formats": list(service.formats),
                    "fields": column_names(service),
                    "columns": describe(service.model, service.fields),
                    "filters": service.get_filter_names(),
                    "status": int(status["status"]),
                    "status_name": STATUS_NAMES[int(status["status"])],
                    "url": request.build_absolute_uri(url),
                }
            )
        return Response(services)

    @action(detail=True, methods=["get"])
    def status(self, request: Request, service: str) -> Response:
        status = control.get_status(self.get_service(), request.user, early=self.early_status)
        return self.body(status)

    @action(detail=True, methods=["post"])
    def start(self, request: Request, service: str) -> Response:
        export_request = control.parse_request(self.get_service(), self.start_parameters(request))
        status = control.start(self.get_service(), export_request, user=request.user)
        return self.body(status, code=202)

    @action(detail=True, methods=["post"])
    def pause(self, request: Request, service: str) -> Response:
        return self.body(control.pause(self.get_service(), request.user))

    @action(detail=True, methods=["post"])
    def resume(self, request: Request, service: str) -> Response:
        return self.body(control.resume(self.get_service(), request.user))

    @action(detail=True, methods=["delete"])
    def cancel(self, request: Request, service: str) -> Response:
        return self.body(control.cancel(self.get_service(), request.user))

    @action(detail=True, methods=["post"])
    def retry(self, request: Request, service: str) -> Response:
        return self.body(control.retry(self.get_service(), request.user), code=202)

    @action(detail=True, methods=["get"])
    def download(self, request: Request, service: str) -> Any:
        try:
            return download_response(self.finished_export(request), request._request)
        except ExportFileGone:
            raise NotFound(_("The export's file is no longer available.")) from None

    def unrouted(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise NotFound(_("No such report endpoint."))

    @action(detail=True, methods=["get"])
    def history(self, request: Request, service: str) -> Response:
        # The current export's entry shows its live progress, from Redis like status.
        live = control.get_status(self.get_service(), request.user)
        exports = (
            ReportExport.objects.for_slot(control.slot_for(self.get_service(), request.user))
            .select_related("created_by", "schedule")
            .order_by("-created_at")
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(exports, request, view=self)
        bodies = [
            history_body(self.get_service(), export, request, live=live) for export in page or []
        ]
        return paginator.get_paginated_response(bodies)

    # --- helpers -------------------------------------------------------------------------

    def get_service(self) -> ExportService:
        assert self.service is not None
        return self.service

    def body(self, status: dict[str, Any], code: int = 200) -> Response:
        return Response(status_body(self.get_service(), status, self.request), status=code)

    def start_parameters(self, request: Request) -> dict[str, builtins.list[str]]:
        """Query parameters, plus form or JSON body fields (the browsable API's form)."""
        params = {name: request.query_params.getlist(name) for name in request.query_params}
        data = request.data
        if hasattr(data, "getlist"):
            body = {name: data.getlist(name) for name in data}
        elif isinstance(data, dict):
            body = {
                name: [str(v) for v in value] if isinstance(value, list) else [str(value)]
                for name, value in data.items()
            }
        else:
            raise exceptions.ParseError(_("The request body must be a JSON object or a form."))
        for name, values in body.items():
            if name not in FORM_NOISE and name not in params:
                params[name] = [v for v in values if v != ""] if name != "format" else values
        return {name: values for name, values in params.items() if values}

    def finished_export(self, request: Request) -> ReportExport:
        service = self.get_service()
        slot = control.slot_for(service, request.user)
        requested = single_query_value(request, "id")
        if requested is not None:
            if not EXPORT_ID.fullmatch(requested):
                raise invalid("id", _("Not a valid export id (a UUID)."))
            export_id = uuid.UUID(requested)
        else:
            status = control.get_status(service, request.user)
            if status["status"] != Status.FINISHED:
                raise NotFound(_("No finished export to download."))
            export_id = status["id"]
        export = ReportExport.objects.filter(
            pk=export_id, slot=slot, status=Status.FINISHED
        ).first()
        if export is None or not export.file_name:
            raise NotFound(_("No finished export to download."))
        return export
