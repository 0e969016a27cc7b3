"""The ``ReportExport`` admin's own views and the status body they serve.

``ExportAdminViews`` is the base of ``ReportExportAdmin``: the status body of an export (live
from Redis while it runs, else its record), the JSON status its page polls, the pause, resume,
cancel and retry buttons (through ``control``, like the API), the download, and the start of an
export from the admin action's form.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from types import SimpleNamespace
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db import transaction
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext_lazy as _
from django.views.i18n import JavaScriptCatalog
from redis.exceptions import RedisError

from django_report_export import control
from django_report_export.admin.forms import ExportStartForm, render_start_form
from django_report_export.download import download_response
from django_report_export.exceptions import ExportFileGone, NoExportInState, ReportExportError
from django_report_export.models import ReportExport, Status
from django_report_export.options import NAMES as OPTION_NAMES
from django_report_export.presentation import export_status, status_body
from django_report_export.registry import ExportService, site

#: Operations the detail page's buttons run, with the states that allow each.
OPERATIONS: dict[str, tuple[Status, ...]] = {
    "pause": (Status.STARTING, Status.RUNNING),
    "resume": (Status.PAUSED,),
    "cancel": Status.active(),
    "retry": (Status.ERROR,),
}
#: Form field of the admin action's page for each parameter of ``control.parse_request``.
FORM_FIELDS = {
    "format": "format",
    "fields": "columns",
    "compression": "compression",
    **{name: name for name in OPTION_NAMES},
    "notify": "notify",
}
OPERATION_LABELS = {
    "pause": _("Pause"),
    "resume": _("Resume"),
    "cancel": _("Cancel"),
    "retry": _("Retry"),
}


def slot_user(export: ReportExport) -> Any:
    """The user whose slot holds ``export`` (``None`` for a per-service slot)."""
    return export.owner if export.slot != export.service else None


def service_of(export: ReportExport) -> ExportService:
    """The export's service; a stand-in with its name if it is no longer registered."""
    if export.service in site:
        return site.get(export.service)
    return cast(ExportService, SimpleNamespace(name=export.service))


class ExportAdminViews(admin.ModelAdmin):  # type: ignore[type-arg]  # generic in the stubs only
    # --- live status ---------------------------------------------------------------------

    def body(self, request: HttpRequest | None, export: ReportExport) -> dict[str, Any]:
        """The status body of ``export``: live from Redis while it runs, else its record.

        It is kept on the instance, with the URL its page polls, for the columns below.
        """
        cached = getattr(export, "_report_export_body", None)
        if cached is not None:
            return cast(dict[str, Any], cached)
        service = service_of(export)
        current = None
        if export.is_active and isinstance(service, ExportService):
            try:
                current = control.get_status(service, slot_user(export))
            except (ReportExportError, RedisError):
                current = None
        status = export_status(export, current)
        body = status_body(service, status, request, download_url=self.url("download", export))
        export._report_export_body = body  # type: ignore[attr-defined]
        poll = None
        if request is not None and body["status"] in Status.active():
            poll = self.status_url(request, export)
        export._report_export_poll = poll  # type: ignore[attr-defined]
        return body

    def status_url(self, request: HttpRequest, export: ReportExport) -> str:
        """Where the page polls: the API's status endpoint for the viewer's own slot."""
        if export.service in site:
            own_slot = control.slot_for(site.get(export.service), request.user)
            if own_slot == export.slot:
                return reverse(
                    "django_report_export:report-status", kwargs={"service": export.service}
                )
        return self.url("status", export)

    def url(self, name: str, export: ReportExport) -> str:
        return reverse(
            f"{self.admin_site.name}:django_report_export_reportexport_{name}", args=[export.pk]
        )

    def poll_url(self, export: ReportExport) -> str | None:
        self.body(None, export)
        return cast(str | None, getattr(export, "_report_export_poll", None))

    # --- views ---------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        def wrap(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
            def wrapper(*args: Any, **kwargs: Any) -> HttpResponseBase:
                return self.admin_site.admin_view(view)(*args, **kwargs)

            wrapper.model_admin = self  # type: ignore[attr-defined]
            # Autocommit, like the API: the export row is committed before its job is queued.
            return transaction.non_atomic_requests(update_wrapper(wrapper, view))

        name = "django_report_export_reportexport"
        urls = [
            path("start/", wrap(self.start_view), name=f"{name}_start"),
            path("jsi18n/", wrap(self.javascript_catalog), name=f"{name}_jsi18n"),
            path("<path:object_id>/status/", wrap(self.status_view), name=f"{name}_status"),
            path("<path:object_id>/download/", wrap(self.download_view), name=f"{name}_download"),
        ]
        for operation in OPERATIONS:
            urls.append(
                path(
                    f"<path:object_id>/{operation}/",
                    wrap(self.operation_view),
                    {"operation": operation},
                    name=f"{name}_{operation}",
                )
            )
        return urls + super().get_urls()

    def visible_export(self, request: HttpRequest, object_id: str) -> ReportExport:
        export = self.get_object(request, unquote(object_id))
        if export is None:
            raise Http404("No such export.")
        return cast(ReportExport, export)

    def javascript_catalog(self, request: HttpRequest) -> HttpResponseBase:
        """The translations of progress.js (``djangojs`` domain of this package only)."""
        return JavaScriptCatalog.as_view(domain="djangojs", packages=["django_report_export"])(
            request
        )

    def status_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return JsonResponse(self.body(request, self.visible_export(request, object_id)))

    def operation_view(self, request: HttpRequest, object_id: str, operation: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        export = self.visible_export(request, object_id)
        try:
            service = site.get(export.service)
            owner = slot_user(export)
            # The buttons act on the slot's current export: make sure it is still this one.
            current = control.get_status(service, owner)
            if str(current["id"]) != str(export.pk):
                raise NoExportInState(
                    str(_("This export is no longer the current export of its service.")),
                    service=export.service,
                )
            body = getattr(control, operation)(service, owner)
        except ReportExportError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(
                request,
                _("%(operation)s: the export is now %(status)s.")
                % {
                    "operation": OPERATION_LABELS[operation],
                    "status": Status(body["status"]).label,
                },
                messages.SUCCESS,
            )
        return HttpResponseRedirect(self.url("change", export))

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        export = self.visible_export(request, object_id)
        if export.status != Status.FINISHED or not export.file_name:
            raise Http404("The export has no finished file.")
        try:
            return download_response(export, request)
        except ExportFileGone:
            raise Http404("The export's file is no longer available.") from None

    def start_view(self, request: HttpRequest) -> HttpResponse:
        """Starts the export the admin action's form describes; then shows its progress."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            service = site.get(request.POST.get("service", ""))
        except ReportExportError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(reverse(f"{self.admin_site.name}:index"))
        if not service.has_permission(request.user):
            raise Http404("No such service.")
        form = ExportStartForm(service, request.POST)
        if form.is_valid():
            try:
                status = control.start(service, form.export_request(), user=request.user)
            except ReportExportError as exc:
                errors = getattr(exc, "errors", None)
                if errors:
                    for name, problems in errors.items():
                        field = FORM_FIELDS.get(name)
                        form.add_error(field, [f"{name}: {problem}" for problem in problems])
                else:
                    self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(
                    request,
                    _("The %(service)s export has started.") % {"service": service.name},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse(
                        f"{self.admin_site.name}:django_report_export_reportexport_change",
                        args=[status["id"]],
                    )
                )
        response: TemplateResponse = render_start_form(request, service, form, self.admin_site)
        return response
