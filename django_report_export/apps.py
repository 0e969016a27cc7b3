from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReportExportConfig(AppConfig):
    name = "django_report_export"
    verbose_name = _("Report exports")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for what they register: the system checks, the receivers that queue the
        # webhooks and emails of an export's events, and the receiver that notes
        # which process opened each database connection.
        from django_report_export import checks, notifications, processes  # noqa: F401
        from django_report_export.registry import autodiscover

        autodiscover()
