"""The package's admin: the ``ReportExport`` admin (``exports``), registered here on the
default admin site, and the export action for a shop's own admins (``actions``).

Django's admin autodiscovery imports this package.
"""

from django.contrib import admin

from django_report_export.admin.exports import ReportExportAdmin, ServiceListFilter
from django_report_export.models import ReportExport

admin.site.register(ReportExport, ReportExportAdmin)

__all__ = ["ReportExportAdmin", "ServiceListFilter"]
