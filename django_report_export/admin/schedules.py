"""The ``ReportSchedule`` admin: schedules listed with their next run, created and changed
through a form that validates the schedule's start as the API validates one
(``schedules.schedule_errors``), and each schedule's claimed occurrences below it.

A staff user needs the model's own permissions (add, change, view ``reportschedule``) and the
read permission of the schedule's service; the owner, in whose slot and name the exports run,
must hold that read permission too.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from django_report_export.admin.display import EMPTY, format_time
from django_report_export.admin.exports import readable_services
from django_report_export.formats import format_names
from django_report_export.models import ReportSchedule, ScheduleRun
from django_report_export.registry import site
from django_report_export.schedules import plan, schedule_errors

#: Changes after which the next run is planned again from now.
PLANNING_FIELDS = ("cron", "timezone", "enabled")
#: The JSON fields, and what an empty input stands for.
JSON_EMPTY: dict[str, Any] = {
    "fields": list,
    "options": dict,
    "filters": dict,
    "recipients": list,
    "webhooks": list,
}


class ReportScheduleForm(forms.ModelForm):  # type: ignore[type-arg]  # generic in the stubs only
    """The schedule, validated whole: a start the API would refuse is refused here."""

    service = forms.ChoiceField(label=_("service"))
    format = forms.ChoiceField(label=_("format"))

    class Meta:
        model = ReportSchedule
        fields = [
            "name",
            "service",
            "format",
            "compression",
            "fields",
            "options",
            "filters",
            "cron",
            "timezone",
            "enabled",
            "owner",
            "recipients",
            "webhooks",
        ]
        help_texts = {
            "fields": _('A JSON list of field names, e.g. ["id", "total"]; [] for all.'),
            "options": _('Start parameters as JSON, e.g. {"delimiter": ";", "bom": true}.'),
            "filters": _('The service\'s filters as JSON, e.g. {"status": "paid"}.'),
            "recipients": _("A JSON list of email addresses told when an export ends."),
            "webhooks": _(
                'A JSON list of endpoints: [{"url": ..., "secret": ..., "events": [...]}].'
            ),
        }

    def __init__(self, *args: Any, services: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = services if services is not None else [service.name for service in site]
        current = self.instance.service if self.instance.pk else ""
        if current and current not in names:
            names = [*names, current]
        service_field = cast(forms.ChoiceField, self.fields["service"])
        service_field.choices = [(name, name) for name in sorted(names, key=str.lower)]
        format_field = cast(forms.ChoiceField, self.fields["format"])
        format_field.choices = [(name, name) for name in format_names()]
        self.readable = set(services if services is not None else names)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name, empty in JSON_EMPTY.items():
            if name in data and data[name] in (None, ""):
                data[name] = empty()
        if self.errors:
            return data
        if data.get("service") not in self.readable:
            self.add_error("service", _("You may not export this service."))
            return data
        candidate = ReportSchedule(**{name: data.get(name) for name in self._meta.fields or ()})
        for field, messages in schedule_errors(candidate).items():
            target = field if field in self.fields else None
            for message in messages:
                self.add_error(target, message)
        owner = data.get("owner")
        if owner is not None and not self.errors:
            service = site.get(data["service"])
            if not service.has_permission(owner):
                self.add_error("owner", _("This user may not read the service's exports."))
        return data


class ScheduleRunInline(admin.TabularInline):  # type: ignore[type-arg]  # generic in the stubs only
    model = ScheduleRun
    verbose_name = _("run")
    verbose_name_plural = _("runs")
    fields = ("occurrence", "outcome", "missed", "export_link", "reason", "created_at")
    readonly_fields = fields
    ordering = ["-occurrence"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("export"))
    def export_link(self, run: ScheduleRun) -> str:
        if run.export_id is None:
            return EMPTY
        url = reverse(
            f"{self.admin_site.name}:django_report_export_reportexport_change",
            args=[run.export_id],
        )
        return format_html('<a href="{}">{}</a>', url, str(run.export_id)[:8])


class ReportScheduleAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic in the stubs only
    form = ReportScheduleForm
    list_display = [
        "name",
        "service",
        "format",
        "cron",
        "timezone",
        "enabled",
        "next_run_column",
        "last_run_column",
        "owner",
    ]
    list_filter = ["enabled", "service"]
    search_fields = ["name", "service"]
    ordering = ["next_run_at", "name"]
    readonly_fields = ["next_run_at", "last_run_at"]
    inlines = [ScheduleRunInline]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return [
            (None, {"fields": ["name", "service", "format", "compression", "fields"]}),
            (_("Start parameters"), {"fields": ["options", "filters"]}),
            (_("When"), {"fields": ["cron", "timezone", "enabled", "next_run_at", "last_run_at"]}),
            (_("Who"), {"fields": ["owner", "recipients", "webhooks"]}),
        ]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        services = readable_services(request)

        class RequestForm(form):  # type: ignore[valid-type,misc]
            def __init__(self, *args: Any, **inner: Any) -> None:
                inner.setdefault("services", services)
                super().__init__(*args, **inner)

        return RequestForm

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("owner", str(request.user.pk))
        return initial

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request).select_related("owner")
        return queryset.filter(service__in=readable_services(request))

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not obj.enabled:
            obj.next_run_at = None
        elif obj.next_run_at is None or set(PLANNING_FIELDS) & set(form.changed_data):
            obj.next_run_at = plan(obj)
        super().save_model(request, obj, form, change)

    @admin.display(description=_("next run"), ordering="next_run_at")
    def next_run_column(self, schedule: ReportSchedule) -> str:
        return format_time(schedule.next_run_at)

    @admin.display(description=_("last run"), ordering="last_run_at")
    def last_run_column(self, schedule: ReportSchedule) -> str:
        return format_time(schedule.last_run_at)


__all__ = ["ReportScheduleAdmin", "ReportScheduleForm"]
