"""A project that mounts the report API somewhere else than the demo shop does."""

from django.urls import include, path

urlpatterns = [path("exports/", include("django_report_export.urls"))]
