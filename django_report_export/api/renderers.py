"""The browsable API of the report endpoints: every endpoint usable from a browser.

``ReportBrowsableAPIRenderer`` is DRF's ``BrowsableAPIRenderer`` with what this API needs:

* ``start`` gets a form built for the service (``start_form_serializer``): a select of the
  service's formats only, its fields, compression and one input per filter of its FilterSet.
  The form posts form data, which the start view merges into the query parameters.
* ``pause``, ``resume`` and ``retry`` get a plain POST button (they take no parameters),
  ``cancel`` DRF's DELETE button; no raw-data form where there is nothing to send.
* Each page is titled for its service and endpoint and links the service's other endpoints.
* No ``?format=`` links: here ``format`` names the export format, not a renderer.
"""

from __future__ import annotations

from typing import Any

from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from rest_framework import exceptions, serializers
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.settings import api_settings

from django_report_export.api.serializers import StartSerializer
from django_report_export.columns import column_names
from django_report_export.formats import format_names
from django_report_export.options import OPTIONS
from django_report_export.registry import ExportService

#: Endpoints of a service, in the order the pages link them, with the method each takes.
ENDPOINTS = {
    "status": "GET",
    "start": "POST",
    "pause": "POST",
    "resume": "POST",
    "cancel": "DELETE",
    "retry": "POST",
    "download": "GET",
    "history": "GET",
}

TITLES = {
    "list": "Report exports",
    "status": "Status",
    "start": "Start an export",
    "pause": "Pause",
    "resume": "Resume",
    "cancel": "Cancel",
    "retry": "Retry",
    "download": "Download",
    "history": "History",
}

HELP = {
    "list": "The services you may export, with their formats, fields, filters and the status "
    "of their current export. Open a service's status to start, follow and download exports.",
    "status": "The current export of this service: status (0 Ready, 1 Starting, 2 Running, "
    "3 Paused, 4 Canceled, 5 Finished, 6 Error), progress, rows per second, ETA, and the "
    "download URL once it is finished. Poll it while an export runs.",
    "start": "Starts an export of this service in the background and answers 202 with its "
    "status. Choose a format; optionally a comma-separated subset of the fields, gzip "
    "compression and the service's filters (empty filters are not applied). An export "
    "still starting, running or paused is canceled first.",
    "pause": "Pauses the running export at its next chunk; its worker is released. POST, "
    "no parameters. 404 when nothing is starting or running.",
    "resume": "Resumes the paused export from its last checkpoint. POST, no parameters. 404 "
    "when nothing is paused.",
    "cancel": "Cancels the export that is starting, running or paused and discards its rows. "
    "DELETE. 404 when there is nothing to cancel.",
    "retry": "Continues the export in Error from its last checkpoint, with a new run; answers "
    "202 with its status. POST, no parameters. 404 when nothing is in Error.",
    "download": "The finished export's file, as an attachment, with its ETag (SHA-256); "
    "answers Range requests (206). 404 while nothing is finished.",
    "history": "Past exports of this service, newest first; each finished one has its own "
    "download URL.",
}


def filter_field(name: str, form_field: Any) -> serializers.Field[Any, Any, Any, Any]:
    """A form input for one filter of the service's FilterSet, from its Django form field.

    It is labelled with the query parameter's name, which is what API clients send; the
    filter's own description goes into the help text.
    """
    label = name
    described = str(form_field.label or "")
    if "[invalid name]" in described:  # django-filter's label for a multi-field filter
        described = ""
    help_text = ". ".join(text for text in (described, str(form_field.help_text or "")) if text)
    choices = getattr(form_field, "choices", None) or getattr(form_field.widget, "choices", None)
    if choices:
        options = [(str(value), str(text)) for value, text in choices if value not in ("", None)]
        return serializers.ChoiceField(
            choices=options, required=False, allow_blank=True, label=label, help_text=help_text
        )
    return serializers.CharField(required=False, allow_blank=True, label=label, help_text=help_text)


def start_form_serializer(service: ExportService | None) -> type[serializers.Serializer[Any]]:
    """The start form of ``service``: its formats, fields, compression, options and filters."""
    if service is None:
        return StartSerializer
    formats = [name for name in service.formats if name in format_names()]
    attrs: dict[str, Any] = {
        "format": serializers.ChoiceField(
            choices=[(name, name) for name in formats],
            help_text="Export format (required).",
        ),
        "fields": serializers.CharField(
            required=False,
            allow_blank=True,
            help_text=f"Comma-separated subset, empty for all: {', '.join(column_names(service))}.",
        ),
        "compression": serializers.ChoiceField(
            choices=[("none", "none"), ("gzip", "gzip")], required=False
        ),
    }
    attrs.update(option_fields())
    attrs.update(window_fields(service))
    if service.filterset_class is not None:
        form = service.filterset_class(queryset=service.get_queryset()).form
        for name, form_field in form.fields.items():
            if name not in attrs:
                attrs[name] = filter_field(name, form_field)
    return type(f"{service.name}StartSerializer", (serializers.Serializer,), attrs)


def window_fields(service: ExportService) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
    """``since``, ``from`` and ``to``, blank for no window, on an incremental service only."""
    if not service.incremental_field:
        return {}
    bound = "ISO 8601; without an offset, in the export's time zone."
    return {
        "since": serializers.ChoiceField(
            choices=[("last", "last")],
            required=False,
            allow_blank=True,
            help_text="last: the rows after the last finished window (not with from/to).",
        ),
        "from": serializers.CharField(
            required=False, allow_blank=True, help_text=f"Window start, included. {bound}"
        ),
        "to": serializers.CharField(
            required=False, allow_blank=True, help_text=f"Window end, excluded. {bound}"
        ),
    }


def option_fields() -> dict[str, serializers.Field[Any, Any, Any, Any]]:
    """The file options, blank for the project's default (``options.defaults``)."""
    fields: dict[str, serializers.Field[Any, Any, Any, Any]] = {}
    for name, option in OPTIONS.items():
        scope = "CSV only. " if option.csv_only else ""
        help_text = f"{scope}{option.help} Blank: the project's default."
        if option.choices:
            fields[name] = serializers.ChoiceField(
                choices=[(value, value) for value in option.choices],
                required=False,
                allow_blank=True,
                help_text=help_text,
            )
        else:
            fields[name] = serializers.CharField(
                required=False, allow_blank=True, help_text=help_text
            )
    return fields


class _NoFormatOverride:
    """``api_settings`` for the template, without the ``?format=`` renderer links."""

    URL_FORMAT_OVERRIDE = None

    def __getattr__(self, name: str) -> Any:
        return getattr(api_settings, name)


def action_of(view: Any) -> str:
    """The endpoint a view serves, also when the request's method is not allowed there."""
    action = getattr(view, "action", None)
    if action:
        return str(action)
    actions = list(getattr(view, "action_map", {}).values())
    return str(actions[0]) if len(actions) == 1 else "list"


class ReportBrowsableAPIRenderer(BrowsableAPIRenderer):
    def get_rendered_html_form(self, data: Any, view: Any, method: str, request: Any) -> Any:
        action = action_of(view)
        if method == "POST" and action != "start":
            if method not in view.allowed_methods or not self.may(view, request):
                return None
            return mark_safe('<p class="help-block">This endpoint takes no parameters.</p>')
        if method == "POST" and request.method == "POST" and self.may(view, request):
            # Show the submitted values (and their errors) again after a failed start.
            serializer = view.get_serializer(data=request.data)
            return self.render_form_for_serializer(serializer)
        return super().get_rendered_html_form(data, view, method, request)

    def get_raw_data_form(self, data: Any, view: Any, method: str, request: Any) -> Any:
        if method == "POST" and action_of(view) != "start":
            return None
        return super().get_raw_data_form(data, view, method, request)

    @staticmethod
    def may(view: Any, request: Any) -> bool:
        try:
            view.check_permissions(request)
        except exceptions.APIException:
            return False
        return True

    def get_name(self, view: Any) -> str:
        action = action_of(view)
        service = getattr(view, "service", None)
        title = TITLES.get(action, str(view.get_view_name()))
        return f"{service.name} · {title}" if service is not None else title

    def get_description(self, view: Any, status_code: int) -> str:
        if status_code in (401, 403):
            return ""
        action = action_of(view)
        service = getattr(view, "service", None)
        parts = [format_html("<p>{}</p>", HELP.get(action, ""))]
        if service is not None:
            if service.description:
                parts.insert(0, format_html("<p><strong>{}</strong></p>", service.description))
            parts.append(self.endpoint_links(service, action))
        return mark_safe("".join(parts))

    @staticmethod
    def endpoint_links(service: ExportService, current: str) -> SafeString:
        links = []
        for name, method in ENDPOINTS.items():
            try:
                url = reverse(
                    f"django_report_export:report-{name}", kwargs={"service": service.name}
                )
            except NoReverseMatch:  # pragma: no cover - a project that mounts only some
                continue
            links.append((url, " active" if name == current else "", method, name))
        items = format_html_join(
            " ", '<a class="btn btn-default btn-sm{1}" href="{0}">{2} {3}</a>', links
        )
        try:
            listing = reverse("django_report_export:report-list")
        except NoReverseMatch:  # pragma: no cover
            listing = ""
        back = format_html('<a href="{}">all services</a>', listing) if listing else ""
        return format_html('<p class="report-endpoints">{} {}</p>', items, back)

    def get_breadcrumbs(self, request: Any) -> list[tuple[str, str]]:
        view = getattr(self, "renderer_context", {}).get("view")
        action = action_of(view)
        service = getattr(view, "service", None)
        try:
            crumbs = [(TITLES["list"], reverse("django_report_export:report-list"))]
            if service is not None:
                status_url = reverse(
                    "django_report_export:report-status", kwargs={"service": service.name}
                )
                crumbs.append((service.name, status_url))
        except NoReverseMatch:  # pragma: no cover - mounted without these names
            return list(super().get_breadcrumbs(request))
        if service is not None and action != "status":
            crumbs.append((TITLES.get(action, action), request.path))
        return crumbs

    def get_context(self, data: Any, accepted_media_type: Any, renderer_context: Any) -> Any:
        context = super().get_context(data, accepted_media_type, renderer_context)
        context["api_settings"] = _NoFormatOverride()
        context["available_formats"] = []
        return context
