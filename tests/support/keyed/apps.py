from django.apps import AppConfig


class KeyedConfig(AppConfig):
    name = "tests.support.keyed"
    label = "keyed"

    def ready(self) -> None:
        from django_report_export.registry import site

        from .exports import ORDER_ROW, OrderRowExport

        site.register(ORDER_ROW, OrderRowExport)
