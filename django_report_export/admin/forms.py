"""The page that starts an export from the admin: its form (format, fields, compression, the
file options, and which rows) and the page itself, shown by the admin action and again when
the form has errors.

*Which rows*: the selected rows are passed as an explicit list of primary keys, validated
by ``control.clean_keys`` and stored on the export (``ReportExport.keys``); the job restricts
the service's queryset to them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django import forms
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import model_format_dict
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _

from django_report_export import control, options
from django_report_export.columns import column_names
from django_report_export.exceptions import ReportExportError
from django_report_export.formats import format_names
from django_report_export.keys import key_from_json, key_to_json
from django_report_export.models import Status
from django_report_export.registry import ExportService

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
    notify = forms.BooleanField(
        label=_("Email me"),
        required=False,
        help_text=_("Send an email to your address when the export ends, with its link."),
    )

    # The file options: blank (a form that does not send one) is the project's default.
    delimiter = forms.ChoiceField(
        label=_("Delimiter"),
        choices=[(",", ","), (";", ";"), ("tab", _("tab")), ("|", "|")],
        required=False,
        help_text=_("CSV only, as the next four."),
    )
    bom = forms.ChoiceField(
        label=_("Byte-order mark"),
        choices=[("false", _("no")), ("true", _("yes"))],
        required=False,
    )
    line_ending = forms.ChoiceField(
        label=_("Line ending"), choices=[("lf", "LF"), ("crlf", "CR LF")], required=False
    )
    decimal_separator = forms.ChoiceField(
        label=_("Decimal separator"), choices=[(".", "."), (",", ",")], required=False
    )
    header = forms.ChoiceField(
        label=_("Header row"),
        choices=[("names", _("field names")), ("labels", _("labels")), ("none", _("none"))],
        required=False,
    )
    timezone = forms.CharField(
        label=_("Time zone"),
        required=False,
        help_text=_("An IANA name, e.g. Europe/Berlin; every format."),
    )

    def __init__(self, service: ExportService, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service_ = service
        for name, value in options.defaults().public().items():
            initial = {"\t": "tab", True: "true", False: "false"}.get(value, value)
            self.fields[name].initial = initial
        formats = [name for name in service.formats if name in format_names()]
        format_field = self.fields["format"]
        assert isinstance(format_field, forms.ChoiceField)
        format_field.choices = [(name, name) for name in formats]
        format_field.initial = formats[0] if formats else None
        fields_field = self.fields["columns"]
        assert isinstance(fields_field, forms.MultipleChoiceField)
        names = column_names(service)
        fields_field.choices = list(zip(names, names, strict=True))
        fields_field.initial = names
        self.fields["service"].initial = service.name

    def clean_keys(self) -> list[Any]:
        return parse_keys(self.cleaned_data.get("keys"))

    def export_request(self) -> control.ExportRequest:
        """The validated request; raises ``InvalidExportRequest`` like the API would."""
        data = self.cleaned_data
        # Keep the service's column order whatever order the browser sent the boxes in.
        chosen = [name for name in column_names(self.service_) if name in data["columns"]]
        params = {
            "format": [data["format"]],
            "fields": [",".join(chosen)],
            "compression": [data["compression"] or "none"],
        }
        csv = control.writes_csv(data["format"])
        for name, option in options.OPTIONS.items():
            if data[name] and (csv or not option.csv_only):
                params[name] = [data[name]]
        if data.get("notify"):
            params["notify"] = ["email"]
        request = control.parse_request(self.service_, params)
        if data["selection"] == SELECTED_ROWS:
            request.keys = control.clean_keys(self.service_, data["keys"])
        return request


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
