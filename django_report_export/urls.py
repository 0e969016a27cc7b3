"""Mount with ``path("api/", include("django_report_export.urls"))``."""

from typing import Any

from django.db import transaction
from django.urls import path, re_path

from django_report_export.api.views import ReportViewSet

app_name = "django_report_export"
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def _view(actions: dict[str, Any]) -> Any:
    # Autocommit: the export row is committed before its job is queued, and a queue failure
    # is reported to the caller rather than lost in an on-commit hook.
    return transaction.non_atomic_requests(ReportViewSet.as_view(actions))


urlpatterns = [
    path("report/", _view({"get": "list"}), name="report-list"),
    path("report/<str:service>/status", _view({"get": "status"}), name="report-status"),
    path("report/<str:service>/start", _view({"post": "start"}), name="report-start"),
    path("report/<str:service>/pause", _view({"post": "pause"}), name="report-pause"),
    path("report/<str:service>/resume", _view({"post": "resume"}), name="report-resume"),
    path("report/<str:service>/cancel", _view({"delete": "cancel"}), name="report-cancel"),
    path("report/<str:service>/retry", _view({"post": "retry"}), name="report-retry"),
    path("report/<str:service>/download", _view({"get": "download"}), name="report-download"),
    path("report/<str:service>/history", _view({"get": "history"}), name="report-history"),
    # Anything else under report/ (a name holding "/", an empty name, a trailing slash) is
    # answered by the API's JSON 404 rather than the project's HTML page.
    re_path(r"^report/.*$", _view(dict.fromkeys(METHODS, "unrouted")), name="report-unrouted"),
]
