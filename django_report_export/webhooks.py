"""Webhooks: a signed JSON POST telling an endpoint that an export started or ended.

Endpoints come from ``REPORT_EXPORT["WEBHOOKS"]`` (every service), a service's
``webhooks`` and, for a scheduled export, its schedule's ``webhooks``. Each (export,
endpoint, event) is one RQ job, ``deliver``, queued by ``notifications`` once the export's
change is committed; the export's own job only queues it. The body is built when the event
happens, so every attempt sends the same bytes; each attempt is signed anew (its own
timestamp) and recorded as a ``WebhookDelivery``. A timeout, a refused connection or a 5xx
raises ``DeliveryFailed``, which RQ retries after the next of ``WEBHOOK_RETRY_INTERVALS``;
any other answer ends the delivery. The scheme is documented in docs/notifications.md.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from django_report_export.conf import WEBHOOK_EVENTS, export_settings
from django_report_export.exceptions import UnknownService
from django_report_export.links import endpoint_path
from django_report_export.models import ReportExport, WebhookDelivery
from django_report_export.presentation import status_body
from django_report_export.registry import ExportService, site
from django_report_export.status import snapshot

logger = logging.getLogger(__name__)

DELIVER_PATH = "django_report_export.webhooks.deliver"
SIGNATURE_HEADER = "Report-Export-Signature"
EVENT_HEADER = "Report-Export-Event"
DELIVERY_HEADER = "Report-Export-Delivery"
#: Keys of the status body a webhook carries, after ``event``.
BODY_KEYS = (
    "id",
    "service",
    "status",
    "status_name",
    "processed",
    "file",
    "file_size",
    "sha256",
    "expires_at",
    "error",
)
#: Bytes of a receiver's answer read (and dropped) before the connection is closed.
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Endpoint:
    """A webhook endpoint; ``key`` finds it again when its job runs (the secret stays in the
    settings, never in Redis): ``settings:<i>`` or ``service:<i>``."""

    key: str
    url: str
    secret: str
    events: tuple[str, ...]


class DeliveryFailed(Exception):
    """A delivery to retry: the receiver timed out, refused, or answered 5xx."""


def endpoints(service: ExportService, export: ReportExport | None = None) -> list[Endpoint]:
    declared = [("settings", export_settings.WEBHOOKS), ("service", service.webhooks)]
    if export is not None and export.schedule_id is not None and export.schedule is not None:
        declared.append(("schedule", export.schedule.webhooks))
    return [
        Endpoint(
            f"{source}:{index}",
            endpoint["url"],
            endpoint["secret"],
            tuple(endpoint.get("events", WEBHOOK_EVENTS)),
        )
        for source, items in declared
        for index, endpoint in enumerate(items)
    ]


def absolute_url(path: str) -> str:
    """``path`` under ``BASE_URL`` (a job has no request to take the host from); unset, the
    path alone (check W002 warns)."""
    return f"{export_settings.BASE_URL.rstrip('/')}{path}"


def download_url(export: ReportExport) -> str:
    return absolute_url(f"{endpoint_path('report-download', export.service)}?id={export.pk}")


def event_body(service: ExportService, export: ReportExport, event: str) -> dict[str, Any]:
    """The webhook body: ``event`` and the keys of the export's status body (SPEC §4); keys
    the status body lacks are ``null``."""
    status = status_body(service, snapshot(export), download_url=download_url(export))
    return {"event": event, **{key: status.get(key) for key in BODY_KEYS}}


def encode(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Report-Export-Signature`` value: HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def deliver(
    export_id: str, endpoint_key: str, url: str, event: str, delivery_id: str, body: str
) -> None:
    """The RQ job: one attempt to POST ``body`` to the endpoint ``endpoint_key`` at ``url``
    (both must still match: settings edited meanwhile never send it elsewhere)."""
    export = ReportExport.objects.filter(pk=export_id).first()
    if export is None:
        return  # removed by cleanup meanwhile
    try:
        service = site.get(export.service)
    except UnknownService:
        return
    found = (e for e in endpoints(service, export) if e.key == endpoint_key and e.url == url)
    endpoint = next(found, None)
    if endpoint is None:
        logger.warning(
            "Export %s: webhook endpoint %s is no longer configured.", export_id, endpoint_key
        )
        return
    attempt = WebhookDelivery.objects.filter(delivery=delivery_id).count() + 1
    started = time.monotonic()
    code, error = post(endpoint, event, delivery_id, body.encode())
    WebhookDelivery.objects.create(
        export=export,
        delivery=delivery_id,
        event=event,
        url=endpoint.url,
        attempt=attempt,
        status_code=code,
        error=error,
        duration_ms=round((time.monotonic() - started) * 1000),
    )
    if code is None or code >= 500:
        raise DeliveryFailed(f"Webhook {event} of export {export_id} to {endpoint.url}: {error}")
    if not 200 <= code < 300:
        logger.warning(
            "Webhook %s of export %s to %s: %s, not retried.", event, export_id, endpoint.url, error
        )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other: urllib would repeat a POST as a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post(endpoint: Endpoint, event: str, delivery_id: str, body: bytes) -> tuple[int | None, str]:
    """POST ``body``; the receiver's status (``None``: none) and what went wrong (``""``)."""
    request = urllib.request.Request(
        endpoint.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "django-report-export",
            SIGNATURE_HEADER: signature(endpoint.secret, int(time.time()), body),
            EVENT_HEADER: event,
            DELIVERY_HEADER: delivery_id,
        },
    )
    try:
        with _opener.open(request, timeout=export_settings.WEBHOOK_TIMEOUT) as response:
            response.read(MAX_ANSWER_BYTES)
            return int(response.status), ""
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return None, f"{type(exc.reason).__name__}: {exc.reason}"
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
