"""``ReportExport``: the durable record of every export.

Redis holds the live status of each slot (``status.py``); this model is what survives: the
history, the parameters, the checkpoint a paused or orphaned export continues from, the file
and the error.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Status(models.IntegerChoices):
    READY = 0, _("Ready")
    STARTING = 1, _("Starting")
    RUNNING = 2, _("Running")
    PAUSED = 3, _("Paused")
    CANCELED = 4, _("Canceled")
    FINISHED = 5, _("Finished")
    ERROR = 6, _("Error")

    @classmethod
    def active(cls) -> tuple[Status, ...]:
        """States in which an export holds its slot."""
        return (cls.STARTING, cls.RUNNING, cls.PAUSED)

    @classmethod
    def ended(cls) -> tuple[Status, ...]:
        return (cls.CANCELED, cls.FINISHED, cls.ERROR)


class ReportExportQuerySet(models.QuerySet["ReportExport"]):
    def for_slot(self, slot: str) -> ReportExportQuerySet:
        return self.filter(slot=slot)

    def latest_for_slot(self, slot: str) -> ReportExport | None:
        return self.for_slot(slot).order_by("-created_at").first()


class ReportExport(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.CharField(_("service"), max_length=100, db_index=True)
    #: The export slot: the service name, or ``service:user:<pk>`` when slots are per user.
    slot = models.CharField(_("slot"), max_length=150)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("slot owner"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text=_("Set when slots are per user (SLOT_SCOPE = 'user')."),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("started by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    format = models.CharField(_("format"), max_length=20)
    compression = models.CharField(_("compression"), max_length=20, blank=True, default="")
    fields = models.JSONField(_("fields"), default=list)
    filters = models.JSONField(_("filters"), default=dict, blank=True)
    #: Primary keys the export is restricted to (the admin action's selected rows), validated
    #: by ``control.clean_keys``; ``None`` exports every row that matches the filters.
    keys = models.JSONField(_("selected keys"), null=True, blank=True, default=None)
    #: Shards asked for at start (``None``: the service's ``shards``, else ``SHARD_ROWS``).
    shards = models.PositiveSmallIntegerField(_("shards requested"), null=True, blank=True)
    #: The file options, resolved at start (``options.FileOptions.to_json``): the CSV ones for
    #: a CSV export, ``timezone`` for every format, and the header labels if asked for.
    options = models.JSONField(_("options"), default=dict, blank=True)
    #: The incremental window, fixed at start (``windows.py``): rows whose ``window_field``
    #: is in ``[window_from, window_to)``; no ``window_field``: the export has no window.
    window_field = models.CharField(_("window field"), max_length=200, blank=True, default="")
    window_from = models.DateTimeField(_("window from"), null=True, blank=True)
    window_to = models.DateTimeField(_("window to"), null=True, blank=True)
    #: The reader that wrote the rows of the last run: ``postgresql-copy`` or ``generic``.
    reader = models.CharField(_("reader"), max_length=40, blank=True, default="")
    status = models.PositiveSmallIntegerField(
        _("status"), choices=Status.choices, default=Status.STARTING
    )
    processed = models.BigIntegerField(_("processed rows"), default=0)
    total = models.BigIntegerField(_("total rows"), null=True, blank=True)
    #: ``{"last_key": ..., "parts": [storage names], "sizes": [bytes of each part that
    #: count], "processed": n}``
    checkpoint = models.JSONField(_("checkpoint"), default=dict, blank=True)
    #: Token of the job run that currently owns the export; a run whose token is gone stops.
    run_token = models.CharField(max_length=32, blank=True, default="")
    retries = models.PositiveSmallIntegerField(_("lost-worker continuations"), default=0)
    file_name = models.CharField(_("file"), max_length=500, blank=True, default="")
    file_size = models.BigIntegerField(_("file size"), null=True, blank=True)
    #: Hex SHA-256 of the published file, computed once as it is published.
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True, default="")
    error = models.TextField(_("error"), blank=True, default="")
    #: The address of whoever started the export asking to be mailed when it ends.
    notify_email = models.EmailField(_("notify by email"), blank=True, default="")
    #: The schedule that started the export (``None``: started by hand, the API or the admin).
    schedule = models.ForeignKey(
        "ReportSchedule",
        verbose_name=_("schedule"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="exports",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = ReportExportQuerySet.as_manager()

    class Meta:
        verbose_name = _("report export")
        verbose_name_plural = _("report exports")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["slot", "-created_at"], name="report_export_slot_idx")]

    def __str__(self) -> str:
        return f"{self.service} {self.format} ({self.get_status_display()})"

    @property
    def is_active(self) -> bool:
        return self.status in Status.active()

    def window(self) -> dict[str, Any] | None:
        """The window as the status body shows it: ``{"field", "from", "to"}``, or ``None``."""
        if not self.window_field:
            return None
        start, end = (
            None if v is None else v.isoformat() for v in (self.window_from, self.window_to)
        )
        return {"field": self.window_field, "from": start, "to": end}

    def durable_processed(self) -> int:
        """Rows saved by checkpoints: where a continuation of the export starts from."""
        shards = self.shard_set.all()
        if shards:
            return sum(shard.checkpoint.get("processed", 0) for shard in shards)
        return int(self.checkpoint.get("processed", 0))

    def update_fields(self, **values: Any) -> int:
        """Write ``values`` to this row (and this instance) without a read-modify-write race."""
        values.setdefault("updated_at", timezone.now())
        for name, value in values.items():
            setattr(self, name, value)
        return type(self).objects.filter(pk=self.pk).update(**values)


class ReportExportShard(models.Model):
    """One contiguous key range of a sharded export, exported by whichever worker claims it.

    The range is ``after_key < pk <= last_key`` (``None``: open-ended). Each shard keeps its
    own checkpoint, so a lost worker costs only the rows of its shard since its last one;
    the export's file is assembled from every shard's parts, in ``index`` order.
    """

    export = models.ForeignKey(ReportExport, on_delete=models.CASCADE, related_name="shard_set")
    index = models.PositiveSmallIntegerField(_("index"))
    after_key = models.JSONField(_("after key"), null=True, blank=True, default=None)
    last_key = models.JSONField(_("last key"), null=True, blank=True, default=None)
    #: ``{"last_key": ..., "parts": [...], "sizes": [...], "processed": n}``, as on
    #: ``ReportExport``.
    checkpoint = models.JSONField(_("checkpoint"), default=dict, blank=True)
    processed = models.BigIntegerField(_("processed rows"), default=0)
    done = models.BooleanField(_("done"), default=False)
    run_token = models.CharField(max_length=32, blank=True, default="")
    retries = models.PositiveSmallIntegerField(_("lost-worker continuations"), default=0)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("report export shard")
        verbose_name_plural = _("report export shards")
        ordering = ["export", "index"]
        constraints = [
            models.UniqueConstraint(fields=["export", "index"], name="report_export_shard_unique")
        ]

    def __str__(self) -> str:
        return f"{self.export_id} shard {self.index}"


class WebhookDelivery(models.Model):
    """One attempt to deliver a webhook event of an export to one endpoint.

    ``delivery`` is the same for every attempt of one (export, endpoint, event): the receiver's
    key for idempotency (the ``Report-Export-Delivery`` header).
    """

    export = models.ForeignKey(ReportExport, on_delete=models.CASCADE, related_name="deliveries")
    delivery = models.UUIDField(_("delivery"))
    event = models.CharField(_("event"), max_length=20)
    url = models.URLField(_("URL"), max_length=2000)
    attempt = models.PositiveSmallIntegerField(_("attempt"))
    #: The receiver's HTTP status; ``None`` when it gave none (timeout, refused connection).
    status_code = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True, default="")
    duration_ms = models.PositiveIntegerField(_("duration (ms)"))
    created_at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.event} {self.url} #{self.attempt}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class ReportSchedule(models.Model):
    """An export started by the clock: a start's parameters, a cron expression read in a time
    zone, and whom to tell (``schedules.tick`` starts each occurrence once).

    ``options`` and ``filters`` hold a start's query parameters as the API takes them
    (``{"delimiter": ";"}``, ``{"status": "paid"}``), validated like a start
    (``schedules.schedule_errors``) and parsed again at each occurrence. Times are stored in
    UTC; ``cron`` is read in ``timezone``.
    """

    name = models.CharField(_("name"), max_length=100, unique=True)
    service = models.CharField(_("service"), max_length=100)
    format = models.CharField(_("format"), max_length=20)
    compression = models.CharField(_("compression"), max_length=20, blank=True, default="")
    #: Field names; empty: every field of the service.
    fields = models.JSONField(_("fields"), default=list, blank=True)
    options = models.JSONField(_("options"), default=dict, blank=True)
    filters = models.JSONField(_("filters"), default=dict, blank=True)
    cron = models.CharField(
        _("cron expression"),
        max_length=100,
        help_text=_("Five fields: minute hour day-of-month month day-of-week, e.g. 0 6 * * *."),
    )
    timezone = models.CharField(
        _("time zone"),
        max_length=64,
        default="UTC",
        help_text=_("The cron expression is read in this time zone, e.g. Europe/Berlin."),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=_("Exports run in this user's slot and are started in their name."),
    )
    #: Addresses mailed when a scheduled export ends, beside the service's ``notify_emails``.
    recipients = models.JSONField(_("recipients"), default=list, blank=True)
    #: Endpoints told of the scheduled exports, beside the service's and the project's:
    #: ``[{"url": ..., "secret": ..., "events": [...]}]``.
    webhooks = models.JSONField(_("webhooks"), default=list, blank=True)
    #: The occurrence last claimed (started or skipped), in UTC.
    last_run_at = models.DateTimeField(_("last run"), null=True, blank=True)
    #: The next occurrence due, in UTC; ``None``: computed at the next save or tick.
    next_run_at = models.DateTimeField(_("next run"), null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("report schedule")
        verbose_name_plural = _("report schedules")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ScheduleRun(models.Model):
    """One claimed occurrence of a schedule: its export, or why none was started.

    The unique (schedule, occurrence) pair is the guard: of two tickers claiming one
    occurrence, the second one's insert fails and it starts nothing.
    """

    class Outcome(models.TextChoices):
        #: Claimed, its start not yet done (or the ticker stopped in between).
        CLAIMED = "claimed", _("Claimed")
        STARTED = "started", _("Started")
        SKIPPED = "skipped", _("Skipped")
        FAILED = "failed", _("Failed")

    schedule = models.ForeignKey(ReportSchedule, on_delete=models.CASCADE, related_name="runs")
    #: The occurrence, in UTC.
    occurrence = models.DateTimeField(_("occurrence"))
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices)
    #: Occurrences passed over since the previous run (downtime): they are not run.
    missed = models.PositiveIntegerField(_("missed occurrences"), default=0)
    export = models.ForeignKey(
        ReportExport,
        verbose_name=_("export"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reason = models.TextField(_("reason"), blank=True, default="")
    created_at = models.DateTimeField(_("claimed"), default=timezone.now)

    class Meta:
        verbose_name = _("schedule run")
        verbose_name_plural = _("schedule runs")
        ordering = ["-occurrence"]
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "occurrence"], name="report_export_schedule_run_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} {self.occurrence:%Y-%m-%d %H:%M} {self.outcome}"
