"""The demo shop's home page: where to look, and how to log in."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from django_report_export.registry import site

#: The accounts ``manage.py seed_shop`` creates (username = password).
DEMO_LOGINS = [
    ("admin", "superuser"),
    ("manager", "staff; reads every service"),
    ("support", "staff; reads customer accounts, inquiries and orders"),
]


def home(request: HttpRequest) -> HttpResponse:
    services = sorted(site, key=lambda service: service.name.lower())
    return render(request, "home.html", {"logins": DEMO_LOGINS, "services": services})
