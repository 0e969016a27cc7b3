"""An admin action that exports a changelist's selected rows in the background.

Add it to any ``ModelAdmin`` whose model backs a registered export service::

    from django_report_export.admin.actions import ExportActionMixin, export_action

    @admin.register(Order)
    class OrderAdmin(ExportActionMixin, admin.ModelAdmin):
        ...  # one "Export selected orders (order)" action per service of Order

    @admin.register(Product)
    class ProductAdmin(admin.ModelAdmin):
        actions = [export_action("product")]  # or name the service explicitly

The action asks for the format (the start page of ``admin.forms``), then starts the export
through ``control.start`` and sends the user to the export's progress page in the
``ReportExport`` admin. "Select all N" on a filtered changelist exports the keys of every
matching row (up to ``control.MAX_SELECTED_KEYS``); on an unfiltered changelist it exports the
whole service, without keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from django_report_export import control
from django_report_export.admin.forms import (
    ALL_ROWS,
    SELECTED_ROWS,
    ExportStartForm,
    keys_to_form,
    render_start_form,
)
from django_report_export.exceptions import ReportExportError
from django_report_export.registry import site

#: Where Django 6.1 shows an action (``ActionLocation.CHANGE_LIST``); ``None`` before 6.1, where
#: every action is a changelist's.
CHANGE_LIST: Any
try:
    from django.contrib.admin.options import ActionLocation
except ImportError:  # Django < 6.1
    CHANGE_LIST = None
else:
    CHANGE_LIST = ActionLocation.CHANGE_LIST

ACTION_PREFIX = "report_export_"


def services_for_model(model: type[Any]) -> list[str]:
    """Names of the registered services exporting ``model``."""
    concrete = model._meta.concrete_model
    return [s.name for s in site if s.model._meta.concrete_model is concrete]


def export_action(service_name: str, description: str | None = None) -> Callable[..., Any]:
    """An admin action exporting the selected rows as service ``service_name``."""

    def action(
        modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
    ) -> Any:
        return export_selection(modeladmin, request, queryset, service_name)

    action.__name__ = f"{ACTION_PREFIX}{service_name}"
    action.short_description = description or _(  # type: ignore[attr-defined]
        "Export selected %%(verbose_name_plural)s (%(service)s)"
    ) % {"service": service_name}
    return action


class ExportActionMixin:
    """Adds one export action per service of the admin's model the user may read.

    ``report_export_services`` names the services; ``None`` (the default) takes every
    registered service whose model is this admin's model.
    """

    report_export_services: Sequence[str] | None = None

    def get_report_export_services(self) -> list[str]:
        if self.report_export_services is not None:
            return list(self.report_export_services)
        return services_for_model(self.model)  # type: ignore[attr-defined]

    def get_actions(
        self, request: HttpRequest, action_location: Any = CHANGE_LIST
    ) -> dict[str, Any]:
        # Django 6.1 passes ``action_location`` (changelist or change form); earlier versions
        # know no locations and call ``get_actions(request)``.
        if CHANGE_LIST is None:
            actions: dict[str, Any] = super().get_actions(request)  # type: ignore[misc]
        else:
            actions = super().get_actions(request, action_location=action_location)  # type: ignore[misc]
        if self.actions is None or IS_POPUP_VAR in request.GET:  # type: ignore[attr-defined]
            return actions
        if action_location != CHANGE_LIST:
            return actions  # the export actions act on a changelist's selection only
        for name in self.get_report_export_services():
            if not site.get(name).has_permission(request.user):
                continue
            # ``get_action`` gives what this Django version's actions are: an ``Action``
            # (Django 6.1) or a ``(func, name, description)`` tuple.
            action = self.get_action(export_action(name))  # type: ignore[attr-defined]
            if action is not None:
                actions[f"{ACTION_PREFIX}{name}"] = action
        return actions


def export_selection(
    modeladmin: admin.ModelAdmin[Any],
    request: HttpRequest,
    queryset: QuerySet[Any],
    service_name: str,
) -> HttpResponse | None:
    """The action: work out which rows, then show the start form."""
    try:
        service = site.get(service_name)
    except ReportExportError as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return None
    if not service.has_permission(request.user):
        message = _("You may not export %(service)s.") % {"service": service.name}
        modeladmin.message_user(request, message, messages.ERROR)
        return None
    if queryset.model._meta.concrete_model is not service.model._meta.concrete_model:
        modeladmin.message_user(
            request,
            _("Service %(service)s does not export %(verbose_name_plural)s.")
            % {
                "service": service.name,
                "verbose_name_plural": queryset.model._meta.verbose_name_plural,
            },
            messages.ERROR,
        )
        return None
    whole = request.POST.get("select_across") == "1" and (
        queryset.count() == modeladmin.get_queryset(request).count()
    )
    keys: list[Any] = []
    if not whole:
        limit = control.MAX_SELECTED_KEYS
        keys = list(queryset.order_by("pk").values_list("pk", flat=True)[: limit + 1])
        if len(keys) > limit:
            modeladmin.message_user(
                request,
                _(
                    "At most %(limit)s rows can be exported from a selection. Narrow the "
                    "changelist down, or export the whole service with its filters from the "
                    "browsable API or the report_export command."
                )
                % {"limit": limit},
                messages.ERROR,
            )
            return None
    form = ExportStartForm(
        service,
        initial={
            "selection": ALL_ROWS if whole else SELECTED_ROWS,
            "keys": keys_to_form(service, keys),
            "next": request.get_full_path(),
        },
    )
    return render_start_form(request, service, form, admin_site=modeladmin.admin_site)
