from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReportExportConfig(AppConfig):
    name = "django_report_export"
    verbose_name = _("Report exports")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_report_export import checks  # noqa: F401  (registers the system checks)
        from django_report_export.registry import autodiscover

        autodiscover()
