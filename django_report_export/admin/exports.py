"""The ``ReportExport`` admin: every export with its live progress, and the buttons to pause,
resume, cancel and download it.

Export records are read-only here: they are created by starting an export (the API, the
admin action of ``admin.actions``, the ``report_export`` command) and removed by
``report_export cleanup``. A staff user sees the exports of the services they may read (the
service's read permission, as in the API); with ``SLOT_SCOPE = "user"`` only their own,
unless they are a superuser. The views behind the buttons are in ``admin.views``.

Progress updates live: ``static/django_report_export/progress.js`` polls the service's
status endpoint (``report/<service>/status``) while an export is active.
"""

from __future__ import annotations

import json
from typing import Any, cast

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_report_export.admin.deliveries import WebhookDeliveryInline
from django_report_export.admin.display import (
    EMPTY,
    download_link,
    field_html,
    format_eta,
    format_rate,
    format_rows,
    format_size,
    format_time,
    progress_bar,
    states_attr,
)
from django_report_export.admin.views import OPERATION_LABELS, OPERATIONS, ExportAdminViews
from django_report_export.conf import export_settings
from django_report_export.models import ReportExport, Status
from django_report_export.registry import site


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


class ReportExportAdmin(ExportAdminViews):
    list_display = [
        "service",
        "status_column",
        "progress_column",
        "rows_column",
        "speed_column",
        "format_column",
        "created_by",
        "schedule",
        "created_at",
        "download_column",
    ]
    list_filter = [ServiceListFilter, "status", "schedule", "created_at"]
    list_select_related = ["created_by", "owner", "schedule"]
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
                    "file_options",
                    "selected_rows",
                    "export_window",
                ]
            },
        ),
        (
            _("Who and when"),
            {
                "fields": [
                    "created_by",
                    "owner",
                    "schedule",
                    "slot",
                    "created_at",
                    "started_at",
                    "finished_at",
                    "notify_email",
                ]
            },
        ),
        (_("Result"), {"fields": ["file_name", "file_size", "reader", "retries", "error"]}),
    ]
    readonly_fields = ["exported_fields", "file_options", "selected_rows", "export_window"]
    inlines = [WebhookDeliveryInline]
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

    @admin.display(description=_("options"))
    def file_options(self, export: ReportExport) -> str:
        shown = {name: value for name, value in export.options.items() if name != "labels"}
        return ", ".join(f"{name}={json.dumps(value)}" for name, value in shown.items()) or "—"

    @admin.display(description=_("window"))
    def export_window(self, export: ReportExport) -> str:
        window = export.window()
        if window is None:
            return "—"
        return _("%(field)s from %(start)s to %(end)s (excluded)") % {
            "field": window["field"],
            "start": window["from"] or _("the beginning"),
            "end": window["to"],
        }

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


__all__ = ["ReportExportAdmin", "ServiceListFilter"]
