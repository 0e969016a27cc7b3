from django.apps import AppConfig


class BenchConfig(AppConfig):
    """Registers the benchmark's flat ``orderRow`` service (``bench/exports.py``)."""

    name = "bench"

    def ready(self) -> None:
        from django_report_export.registry import site

        from .exports import ORDER_ROW, OrderRowExport

        site.register(ORDER_ROW, OrderRowExport)
