"""Errors raised by django-report-export.

``ReportExportError`` is the runtime base: it carries the service and export it is about and
says so in ``str()``. Configuration mistakes raise ``ImproperlyConfigured`` subclasses instead,
so a ``except ReportExportError`` around an export never hides a broken setup. The API turns
these into HTTP responses (``django_report_export.api.exceptions``).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured


class ReportExportError(Exception):
    """Base of every runtime error; ``service`` and ``export_id`` say what it is about."""

    default_message = "The export failed."

    def __init__(
        self,
        message: str | None = None,
        *,
        service: str | None = None,
        export_id: Any = None,
    ) -> None:
        self.message = message or self.default_message
        self.service = service
        self.export_id = export_id
        super().__init__(self.message)

    def __str__(self) -> str:
        context = []
        if self.service:
            context.append(f"service={self.service!r}")
        if self.export_id:
            context.append(f"export={self.export_id}")
        return f"{self.message} ({', '.join(context)})" if context else self.message


class UnknownService(ReportExportError, LookupError):
    default_message = "Unknown service."


class InvalidExportRequest(ReportExportError, ValueError):
    """Bad parameters for a start: format, fields, compression or filters.

    ``errors`` maps each offending parameter name to a list of messages.
    """

    default_message = "Invalid export parameters."

    def __init__(self, errors: dict[str, list[str]], **kwargs: Any) -> None:
        self.errors = errors
        names = ", ".join(sorted(errors))
        super().__init__(f"Invalid query parameter(s): {names}.", **kwargs)


class NoExportInState(ReportExportError, LookupError):
    """Pause, resume, cancel or download asked of a slot whose export is not in a fitting state."""

    default_message = "No export in a state that allows this."


class SlotBusy(ReportExportError):
    """A start that may not replace the slot's active export (a schedule's occurrence) found
    one; ``export_id`` names it."""

    default_message = "The previous export is still active."


class ExportFileGone(NoExportInState):
    """A finished export's file is no longer in its storage (deleted by hand, say)."""

    default_message = "The export's file is no longer available."


class StatusUnavailable(ReportExportError, ConnectionError):
    """Redis did not answer, returned no status, or a status write failed."""

    default_message = "The export status could not be read or written in Redis."


class NotAcknowledged(StatusUnavailable):
    """A running export did not acknowledge pause or cancel within CANCEL_TIMEOUT."""

    default_message = "The running export did not stop in time."


class QueueUnavailable(ReportExportError, ConnectionError):
    """The export job could not be put on the RQ queue."""

    default_message = "Service currently unavailable"


class ExportCanceled(ReportExportError):
    """Raised inside a job when it must stop because its run was taken from it."""

    default_message = "The export was stopped."


class ExportConfigurationError(ImproperlyConfigured):
    """A service or format declaration that cannot work."""


class AlreadyRegistered(ExportConfigurationError):
    pass
