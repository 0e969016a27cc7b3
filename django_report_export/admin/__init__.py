"""The package's admin: the ``ReportExport`` admin (``exports``) and the ``ReportSchedule``
admin (``schedules``), registered here on the default admin site, and the export action for
a shop's own admins (``actions``).

Django's admin autodiscovery imports this package.
"""

from django.contrib import admin

from django_report_export.admin.exports import ReportExportAdmin, ServiceListFilter
from django_report_export.admin.schedules import ReportScheduleAdmin
from django_report_export.models import ReportExport, ReportSchedule

admin.site.register(ReportExport, ReportExportAdmin)
admin.site.register(ReportSchedule, ReportScheduleAdmin)

__all__ = ["ReportExportAdmin", "ReportScheduleAdmin", "ServiceListFilter"]
