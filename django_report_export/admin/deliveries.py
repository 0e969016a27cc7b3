"""The webhook deliveries of an export, a read-only table on its admin page: each attempt's
event, URL, answer and time (never the endpoint's secret)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from django_report_export.models import WebhookDelivery

COLUMNS = ("created_at", "event", "url", "attempt", "status_code", "duration_ms", "error")


class WebhookDeliveryInline(admin.TabularInline):  # type: ignore[type-arg]  # generic in the stubs only
    model = WebhookDelivery
    verbose_name = _("webhook delivery attempt")
    verbose_name_plural = _("webhook deliveries")
    fields = COLUMNS
    readonly_fields = COLUMNS
    ordering = ["created_at", "pk"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return True  # the export's own page decides who sees it
