"""The old place of the shard job, kept for jobs queued by the previous release (RQ stores
``django_report_export.sharded.run_export_shard``); it goes in the next release. The job
lives in ``runs.sharded``."""

from django_report_export.runs.sharded import run_export_shard

__all__ = ["run_export_shard"]
