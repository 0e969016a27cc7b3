"""The ``ReportExport`` admin: every export with its live progress, and the buttons to pause,
resume, cancel and download it.

Export records are read-only here: they are created by starting an export (the API, the
admin action of ``admin_actions``, the ``report_export`` command) and removed by
``report_export cleanup``. A staff user sees the exports of the services they may read (the
service's read permission, as in the API); with ``SLOT_SCOPE = "user"`` only their own,
unless they are a superuser. Pause, resume and cancel call ``control``, like the API.

Progress updates live: ``static/django_report_export/progress.js`` polls the service's
status endpoint (``report/<service>/status``) while an export is active.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import update_wrapper
from types import SimpleNamespace
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db import transaction
from django.db.models import QuerySet
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
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.i18n import JavaScriptCatalog
from redis.exceptions import RedisError

from django_report_export import control
from django_report_export.admin_actions import ExportStartForm, render_start_form
from django_report_export.api.serializers import status_body
from django_report_export.conf import export_settings
from django_report_export.download import download_response
from django_report_export.exceptions import ExportFileGone, NoExportInState, ReportExportError
from django_report_export.models import ReportExport, Status
from django_report_export.registry import ExportService, site
from django_report_export.status import snapshot

#: Operations the detail page's buttons run, with the states that allow each.
OPERATIONS: dict[str, tuple[Status, ...]] = {
    "pause": (Status.STARTING, Status.RUNNING),
    "resume": (Status.PAUSED,),
    "cancel": Status.active(),
}
#: Form field of the admin action's page for each parameter of ``control.parse_request``.
FORM_FIELDS = {"format": "format", "fields": "columns", "compression": "compression"}
OPERATION_LABELS = {"pause": _("Pause"), "resume": _("Resume"), "cancel": _("Cancel")}
EMPTY = "—"


def states_attr(states: tuple[int, ...]) -> str:
    return ",".join(str(int(state)) for state in states)


def slot_user(export: ReportExport) -> Any:
    """The user whose slot holds ``export`` (``None`` for a per-service slot)."""
    return export.owner if export.slot != export.service else None


def service_of(export: ReportExport) -> ExportService:
    """The export's service; a stand-in with its name if it is no longer registered."""
    if export.service in site:
        return site.get(export.service)
    return cast(ExportService, SimpleNamespace(name=export.service))


def format_eta(seconds: Any) -> str:
    return str(dt.timedelta(seconds=int(seconds))) if seconds is not None else EMPTY


def format_rows(body: dict[str, Any]) -> str:
    total = body["total"]
    return f"{body['processed']:,} / {total:,}" if total is not None else f"{body['processed']:,}"


def format_rate(body: dict[str, Any]) -> str:
    rate = body["rows_per_second"]
    return str(_("%(rate)s rows/s") % {"rate": f"{round(rate):,}"}) if rate else EMPTY


def format_time(value: dt.datetime | None) -> str:
    """A time in the current time zone, as progress.js writes it too."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else EMPTY


def format_size(size: Any) -> str:
    if size is None:
        return EMPTY
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)  # pragma: no cover


class ServiceListFilter(admin.SimpleListFilter):
    title = _("service")
    parameter_name = "service"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        readable = readable_services(request)
        return [(name, name) for name in sorted(readable, key=str.lower)]

    def queryset(self, request: Any, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(service=value) if value else queryset


def readable_services(request: HttpRequest) -> list[str]:
    """Services whose read permission the user holds (cached on the request)."""
    cached = getattr(request, "_report_export_readable", None)
    if cached is None:
        cached = [s.name for s in site if s.has_permission(request.user)]
        request._report_export_readable = cached  # type: ignore[attr-defined]
    return cast(list[str], cached)


@admin.register(ReportExport)
class ReportExportAdmin(admin.ModelAdmin):
    list_display = [
        "service",
        "status_column",
        "progress_column",
        "rows_column",
        "speed_column",
        "format_column",
        "created_by",
        "created_at",
        "download_column",
    ]
    list_filter = [ServiceListFilter, "status", "created_at"]
    list_select_related = ["created_by", "owner"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    search_fields = ["created_by__username", "error"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "service",
                    "format",
                    "compression",
                    "exported_fields",
                    "filters",
                    "selected_rows",
                ]
            },
        ),
        (
            _("Who and when"),
            {"fields": ["created_by", "owner", "slot", "created_at", "started_at", "finished_at"]},
        ),
        (_("Result"), {"fields": ["file_name", "file_size", "retries", "error"]}),
    ]
    readonly_fields = ["exported_fields", "selected_rows"]
    change_form_template = "django_report_export/admin/change_form.html"

    @property
    def media(self) -> forms.Media:
        """progress.css and progress.js, after the catalog of progress.js's texts (jsi18n)."""
        catalog = reverse(f"{self.admin_site.name}:django_report_export_reportexport_jsi18n")
        return super().media + forms.Media(
            css={"all": ["django_report_export/progress.css"]},
            js=[catalog, "django_report_export/progress.js"],
        )

    # --- permissions: read-only records, visible per service read permission -------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        readable = readable_services(request)
        if obj is not None:
            return obj.service in readable
        return bool(readable)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request).filter(service__in=readable_services(request))
        user = request.user
        if export_settings.SLOT_SCOPE == "user" and not user.is_superuser:
            queryset = queryset.filter(owner=user)
        return queryset

    # --- live status ---------------------------------------------------------------------

    def body(self, request: HttpRequest | None, export: ReportExport) -> dict[str, Any]:
        """The status body of ``export``: live from Redis while it runs, else its record.

        It is kept on the instance, with the URL its page polls, for the columns below.
        """
        cached = getattr(export, "_report_export_body", None)
        if cached is not None:
            return cast(dict[str, Any], cached)
        status: dict[str, Any] = snapshot(export)
        service = service_of(export)
        owner = slot_user(export)
        if export.is_active and isinstance(service, ExportService):
            try:
                current = control.get_status(service, owner)
            except (ReportExportError, RedisError):
                current = None
            if current is not None and str(current.get("id")) == str(export.pk):
                status = current
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

    # --- changelist columns --------------------------------------------------------------

    @admin.display(description=_("status"), ordering="status")
    def status_column(self, export: ReportExport) -> str:
        """The status, and below it the error (or the note of a pause or cancel)."""
        body = self.body(None, export)
        error = body["error"] or ""
        return format_html(
            '<span class="rex-status rex-status-{}" data-rex-export="{}" '
            'data-rex-field="status_name">{}</span>'
            '<div class="rex-error-text" title="{}" data-rex-export="{}" data-rex-field="error" '
            "data-rex-hide-empty{}>{}</div>",
            body["status"],
            export.pk,
            Status(body["status"]).label,
            error,
            export.pk,
            "" if error else " hidden",
            error,
        )

    @admin.display(description=_("progress"))
    def progress_column(self, export: ReportExport) -> str:
        return progress_bar(self.body(None, export), self.poll_url(export))

    @admin.display(description=_("rows"))
    def rows_column(self, export: ReportExport) -> str:
        return field_html(export, "rows", format_rows(self.body(None, export)))

    @admin.display(description=_("speed · ETA"))
    def speed_column(self, export: ReportExport) -> str:
        body = self.body(None, export)
        if body["status"] not in Status.active():
            return EMPTY
        return format_html(
            '{}<br><span class="rex-quiet">{} {}</span>',
            field_html(export, "rate", format_rate(body)),
            _("ETA"),
            field_html(export, "eta", format_eta(body["eta_seconds"])),
        )

    @admin.display(description=_("format"), ordering="format")
    def format_column(self, export: ReportExport) -> str:
        return f"{export.format}.{export.compression}" if export.compression else export.format

    @admin.display(description=_("file"))
    def download_column(self, export: ReportExport) -> str:
        return download_link(export, self.body(None, export), self.url("download", export))

    @admin.display(description=_("fields"))
    def exported_fields(self, export: ReportExport) -> str:
        return ", ".join(export.fields)

    @admin.display(description=_("selected rows"))
    def selected_rows(self, export: ReportExport) -> str:
        if export.keys is None:
            return str(_("all rows matching the filters"))
        count = len(export.keys)
        shown = ", ".join(str(key) for key in export.keys[:20])
        if count > 20:
            shown += ", … " + _("(%(count)s in all)") % {"count": count}
        return ngettext("%(count)s selected: %(keys)s", "%(count)s selected: %(keys)s", count) % {
            "count": count,
            "keys": shown,
        }

    def poll_url(self, export: ReportExport) -> str | None:
        self.body(None, export)
        return cast(str | None, getattr(export, "_report_export_poll", None))

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        for export in changelist.result_list:  # evaluated once; the template reuses the rows
            self.body(request, export)
        return changelist

    # --- the progress page ---------------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        export = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if export is not None:
            body = self.body(request, export)
            # Not str(export): it names the status, which changes while the page is open.
            context["subtitle"] = f"{export.service} · {format_time(export.created_at)}"
            context["progress"] = {
                "export": export,
                "time_zone": timezone.get_current_timezone_name(),
                "started_at": format_time(export.started_at),
                "finished_at": format_time(export.finished_at),
                "body": body,
                "status_label": Status(body["status"]).label,
                "bar": progress_bar(body, self.poll_url(export), large=True),
                "rows": format_rows(body),
                "rate": format_rate(body),
                "eta": format_eta(body["eta_seconds"]),
                "file_size": format_size(body["file_size"]),
                "download": download_link(export, body, self.url("download", export)),
                "buttons": [
                    {
                        "name": name,
                        "label": OPERATION_LABELS[name],
                        "url": self.url(name, export),
                        "states": states_attr(states),
                        "hidden": body["status"] not in states,
                    }
                    for name, states in OPERATIONS.items()
                ],
                "history_url": reverse(
                    f"{self.admin_site.name}:django_report_export_reportexport_changelist"
                )
                + f"?service={export.service}",
            }
        return super().change_view(request, object_id, form_url, context)

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
            return download_response(export)
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


def field_html(export: ReportExport, field: str, text: str) -> str:
    return format_html(
        '<span data-rex-export="{}" data-rex-field="{}">{}</span>', export.pk, field, text
    )


def progress_bar(body: dict[str, Any], poll_url: str | None, large: bool = False) -> str:
    """The bar; with ``poll_url`` it carries what progress.js needs to keep it live."""
    progress = body["progress"]
    poll = (
        format_html(' data-rex-poll="{}" data-rex-status="{}"', poll_url, body["status"])
        if poll_url
        else ""
    )
    return format_html(
        '<div class="rex-progress{}" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
        'aria-valuenow="{}" data-rex-export="{}" data-rex-field="progress"{}>'
        '<div class="rex-progress-fill rex-progress-{}" style="width: {}%"></div>'
        '<span class="rex-progress-label">{}%</span></div>',
        " rex-progress-large" if large else "",
        localize_number(progress),
        body["id"] or "",
        poll,
        body["status"],
        localize_number(progress),
        localize_number(progress),
    )


def localize_number(value: float) -> str:
    """A percentage for HTML attributes and CSS: always a dot, never a thousands separator."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return text if text else "0"


def download_link(export: ReportExport, body: dict[str, Any], url: str) -> str:
    hidden = "" if body["status"] == Status.FINISHED else " hidden"
    return format_html(
        '<a class="rex-download" href="{}" data-rex-export="{}" data-rex-states="{}"{}>{}</a>',
        url,
        export.pk,
        int(Status.FINISHED),
        hidden,
        _("Download"),
    )


__all__ = ["ReportExportAdmin", "ServiceListFilter"]
