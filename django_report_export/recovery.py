"""The old place of the export jobs' failure callback, kept for jobs queued by the previous
release (RQ stores ``django_report_export.recovery.job_failed``); it goes in the next
release. The callback lives in ``maintenance``."""

from django_report_export.maintenance import job_failed, recover_abandoned

__all__ = ["job_failed", "recover_abandoned"]
