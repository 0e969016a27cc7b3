"""An admin action that exports a changelist's selected rows in the background.

Add it to any ``ModelAdmin`` whose model backs a registered export service::

    from django_report_export.admin_actions import ExportActionMixin, export_action

    @admin.register(Order)
    class OrderAdmin(ExportActionMixin, admin.ModelAdmin):
        ...  # one "Export selected orders (order)" action per service of Order

    @admin.register(Product)
    class ProductAdmin(admin.ModelAdmin):
        actions = [export_action("product")]  # or name the service explicitly

The action asks for the format (a page listing the service's formats, fields and
compression), then starts the export through ``control.start`` and sends the user to the
export's progress page in the ``ReportExport`` admin.

*Which rows*: the selected rows are passed as an explicit list of primary keys, validated
by ``control.clean_keys`` and stored on the export (``ReportExport.keys``); the job restricts
the service's queryset to them. "Select all N" on a filtered changelist does the same with
the keys of every matching row (up to ``control.MAX_SELECTED_KEYS``); on an unfiltered
changelist it exports the whole service, without keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import model_format_dict
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _

from django_report_export import control
from django_report_export.exceptions import ReportExportError
from django_report_export.formats import format_names
from django_report_export.keys import key_from_json, key_to_json
from django_report_export.models import Status
from django_report_export.registry import ExportService, site

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
START_TEMPLATE = "django_report_export/admin/start_export.html"
#: ``selection`` values of the start form.
ALL_ROWS, SELECTED_ROWS = "all", "keys"


class ExportStartForm(forms.Form):
    """What the action asks before it starts: format, fields, compression; the selection."""

    service = forms.CharField(widget=forms.HiddenInput)
    selection = forms.ChoiceField(
        choices=[(ALL_ROWS, ALL_ROWS), (SELECTED_ROWS, SELECTED_ROWS)], widget=forms.HiddenInput
    )
    keys = forms.CharField(required=False, widget=forms.HiddenInput)
    next = forms.CharField(required=False, widget=forms.HiddenInput)
    format = forms.ChoiceField(label=_("Format"), widget=forms.RadioSelect)
    #: The export's ``fields`` parameter (``fields`` would shadow ``Form.fields``).
    columns = forms.MultipleChoiceField(
        label=_("Fields"),
        widget=forms.CheckboxSelectMultiple,
        help_text=_("The columns of the file, in the service's order."),
    )
    compression = forms.ChoiceField(
        label=_("Compression"),
        choices=[("", _("none")), ("gzip", "gzip")],
        required=False,
    )

    def __init__(self, service: ExportService, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service_ = service
        formats = [name for name in service.formats if name in format_names()]
        format_field = self.fields["format"]
        assert isinstance(format_field, forms.ChoiceField)
        format_field.choices = [(name, name) for name in formats]
        format_field.initial = formats[0] if formats else None
        fields_field = self.fields["columns"]
        assert isinstance(fields_field, forms.MultipleChoiceField)
        fields_field.choices = [(name, name) for name in service.fields]
        fields_field.initial = list(service.fields)
        self.fields["service"].initial = service.name

    def clean_keys(self) -> list[Any]:
        return parse_keys(self.cleaned_data.get("keys"))

    def export_request(self) -> control.ExportRequest:
        """The validated request; raises ``InvalidExportRequest`` like the API would."""
        data = self.cleaned_data
        # Keep the service's column order whatever order the browser sent the boxes in.
        chosen = [name for name in self.service_.fields if name in data["columns"]]
        params = {
            "format": [data["format"]],
            "fields": [",".join(chosen)],
            "compression": [data["compression"] or "none"],
        }
        request = control.parse_request(self.service_, params)
        if data["selection"] == SELECTED_ROWS:
            request.keys = control.clean_keys(self.service_, data["keys"])
        return request


def services_for_model(model: type[Any]) -> list[str]:
    """Names of the registered services exporting ``model``."""
    concrete = model._meta.concrete_model
    return [s.name for s in site if s.model._meta.concrete_model is concrete]


def export_action(service_name: str, description: str | None = None) -> Callable[..., Any]:
    """An admin action exporting the selected rows as service ``service_name``."""

    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
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
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any], service_name: str
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


def keys_to_form(service: ExportService, keys: Sequence[Any]) -> str:
    """The start form's value for the selected rows' ``keys``: a JSON list of their JSON forms
    (a text key may hold any character, commas too)."""
    return json.dumps([key_to_json(service.model, key) for key in keys])


def parse_keys(raw: Any) -> list[Any]:
    """The selected rows' keys from the start form (``keys_to_form``), each to be checked by
    ``clean_keys``; a value that is no JSON list is read as keys separated by commas, as forms
    rendered by earlier versions send them."""
    text = str(raw or "")
    try:
        keys = json.loads(text)
    except ValueError:
        keys = None
    if isinstance(keys, list):
        return keys
    return [key for key in text.split(",") if key]


def safe_next(request: HttpRequest, url: Any) -> str:
    """``url`` if it is a path of this site (the changelist the action came from), else ""."""
    if url and url_has_allowed_host_and_scheme(
        str(url), allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return str(url)
    return ""


def render_start_form(
    request: HttpRequest, service: ExportService, form: ExportStartForm, admin_site: Any
) -> TemplateResponse:
    selection = form["selection"].value()
    keys = parse_keys(form["keys"].value())
    if selection == SELECTED_ROWS:
        count = len(keys)
        try:
            values = [key_from_json(service.model, key) for key in keys]
            exported = service.get_queryset().filter(pk__in=values).count() if keys else 0
        except (ValueError, TypeError, ValidationError):
            exported = 0
    else:
        count = exported = service.get_queryset().count()
    current = None
    try:
        current = control.get_status(service, request.user)
    except ReportExportError:
        current = None
    opts = service.model._meta
    return TemplateResponse(
        request,
        START_TEMPLATE,
        {
            **admin_site.each_context(request),
            "title": _("Export %(verbose_name_plural)s") % model_format_dict(opts),
            "opts": opts,
            "service": service,
            "form": form,
            "selection": selection,
            "count": count,
            "exported": exported,
            "active": current if current and current["status"] in Status.active() else None,
            "action_url": reverse(f"{admin_site.name}:django_report_export_reportexport_start"),
            "back_url": safe_next(request, form["next"].value()),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        },
    )
