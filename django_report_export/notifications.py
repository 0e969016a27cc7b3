"""Telling people an export started or ended: webhooks (``webhooks``) and email.

The receivers here are connected to the signals of ``signals`` (``apps.ready`` imports this
module). Each queues its jobs on ``NOTIFY_QUEUE`` once the transaction that changed the export
commits, and never raises: a Redis that refuses the job is logged, the export goes on. Email
goes out on the three ends (finished, canceled, error), not on start, to the address recorded
by ``notify=email`` (``ReportExport.notify_email``), the service's ``notify_emails`` and, for
a scheduled export, its schedule's ``recipients``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.dispatch import Signal
from django.template.loader import render_to_string
from django.utils import translation
from redis.exceptions import RedisError
from rq import Retry

from django_report_export import signals
from django_report_export.conf import export_settings
from django_report_export.connection import get_notify_queue
from django_report_export.exceptions import UnknownService
from django_report_export.models import ReportExport, Status
from django_report_export.registry import ExportService, site
from django_report_export.webhooks import DELIVER_PATH, download_url, encode, endpoints, event_body

logger = logging.getLogger(__name__)

EMAIL_PATH = "django_report_export.notifications.send_email"
#: The event each signal is, as webhooks name it.
EVENTS: dict[Signal, str] = {
    signals.export_started: "started",
    signals.export_finished: "finished",
    signals.export_canceled: "canceled",
    signals.export_failed: "error",
}
EMAIL_EVENTS = ("finished", "canceled", "error")


def on_export_event(signal: Signal, sender: Any, export: ReportExport, **kwargs: Any) -> None:
    event = EVENTS[signal]
    transaction.on_commit(lambda: notify(export, event))


for _signal in EVENTS:
    _signal.connect(on_export_event, dispatch_uid=f"django_report_export.notify.{EVENTS[_signal]}")


def notify(export: ReportExport, event: str) -> None:
    """Queue the webhook deliveries and the email of ``event``; failures are only logged."""
    try:
        service = site.get(export.service)
    except UnknownService:
        return
    try:
        queue_webhooks(service, export, event)
        if event in EMAIL_EVENTS and recipients(service, export):
            get_notify_queue().enqueue_call(
                EMAIL_PATH,
                args=(str(export.pk), event),
                timeout=60,
                retry=retry_policy(),
                job_id=f"report-export-{export.pk}-email-{event}",
                description=f"report export {export.service} {export.pk}: email ({event})",
            )
    except (RedisError, OSError) as exc:
        logger.error(
            "Export %s: the %s notifications could not be queued: %s", export.pk, event, exc
        )
    except Exception:
        # Run by the code that changed the export (on commit, at once outside a transaction):
        # whatever goes wrong here must not reach it.
        logger.exception("Export %s: the %s notifications failed.", export.pk, event)


def queue_webhooks(service: ExportService, export: ReportExport, event: str) -> None:
    targets = [endpoint for endpoint in endpoints(service, export) if event in endpoint.events]
    if not targets:
        return
    body = encode(event_body(service, export, event))
    retry = retry_policy()
    queue = get_notify_queue()
    for endpoint in targets:
        delivery = str(uuid.uuid4())
        queue.enqueue_call(
            DELIVER_PATH,
            args=(str(export.pk), endpoint.key, endpoint.url, event, delivery, body),
            # The receiver's connect and read each have WEBHOOK_TIMEOUT; this bounds the rest.
            timeout=int(export_settings.WEBHOOK_TIMEOUT * 3) + 10,
            retry=retry,
            job_id=f"report-export-{export.pk}-webhook-{delivery}",
            description=f"report export {export.service} {export.pk}: webhook {event}",
            failure_ttl=7 * 86400,
        )


def retry_policy() -> Retry | None:
    """RQ's retries after each of ``WEBHOOK_RETRY_INTERVALS`` (emails too: a mail server down)."""
    intervals = list(export_settings.WEBHOOK_RETRY_INTERVALS)
    return Retry(max=len(intervals), interval=intervals) if intervals else None


def recipients(service: ExportService, export: ReportExport) -> list[str]:
    addresses = [export.notify_email, *service.notify_emails]
    if export.schedule_id is not None and export.schedule is not None:
        addresses += export.schedule.recipients
    return list(dict.fromkeys(address for address in addresses if address))


def send_email(export_id: str, event: str) -> None:
    """The RQ job: mail the export's recipients that it ended, with the download link."""
    export = ReportExport.objects.filter(pk=export_id).first()
    if export is None:
        return
    try:
        service = site.get(export.service)
    except UnknownService:
        return
    to = recipients(service, export)
    if not to:
        return
    context = {
        "export": export,
        "service": service,
        "event": event,
        "status": Status(export.status).label,  # lazy: rendered in the language below
        "finished": export.status == Status.FINISHED,
        "link": download_url(export),
        "retention_days": export_settings.RETENTION_DAYS,
    }
    # The project's language, not whichever one the worker's thread last activated.
    with translation.override(settings.LANGUAGE_CODE):
        subject = render_to_string("django_report_export/email/subject.txt", context)
        body = render_to_string("django_report_export/email/body.txt", context)
    send_mail(" ".join(subject.split()), body, None, to)
