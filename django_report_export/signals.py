"""Signals sent as exports change state; each is sent with ``sender=ReportExport`` and
``export`` (the ``ReportExport``), so a shop can notify people.

- ``export_started``: an export was queued by a start or a retry (not by a resume).
- ``export_finished``: the file was published.
- ``export_canceled``: canceled manually or by a newer start.
- ``export_failed``: the export ended in Error; ``export.error`` says why.
"""

from django.dispatch import Signal

export_started = Signal()
export_finished = Signal()
export_canceled = Signal()
export_failed = Signal()
