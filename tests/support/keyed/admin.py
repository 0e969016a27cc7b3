from django.contrib import admin

from django_report_export.admin.actions import ExportActionMixin

from .models import Counted, Named, Slugged


@admin.register(Slugged, Named, Counted)
class KeyedAdmin(ExportActionMixin, admin.ModelAdmin):
    """The export action on each keyed model, for its selected rows."""
