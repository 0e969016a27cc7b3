"""The old import path of the admin export action; use ``django_report_export.admin.actions``.

Kept so that ``from django_report_export.admin_actions import ExportActionMixin`` goes on
working.
"""

from django_report_export.admin.actions import (
    ACTION_PREFIX,
    ExportActionMixin,
    export_action,
    export_selection,
    services_for_model,
)
from django_report_export.admin.forms import ExportStartForm, render_start_form

__all__ = [
    "ACTION_PREFIX",
    "ExportActionMixin",
    "ExportStartForm",
    "export_action",
    "export_selection",
    "render_start_form",
    "services_for_model",
]
