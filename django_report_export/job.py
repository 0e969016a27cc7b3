"""The old place of the export job, kept for jobs queued by the previous release (RQ stores
``django_report_export.job.run_export``); it goes in the next release. The job lives in
``runs.single``."""

from django_report_export.runs.single import run_export

__all__ = ["run_export"]
