"""Paths of the report endpoints, reversed once per URLconf, script prefix and language.

A finished export's status body links its download, and the status endpoint is the API's
busiest: ``reverse()`` costs more than building and rendering the rest of that body together
(namespace lookup, pattern substitution, quoting). What it returns depends only on the
route, the service, the URLconf in force, the script prefix (``SCRIPT_NAME``) and, for
translated routes, the active language, so the answer is kept under exactly those.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.urls import get_resolver, get_script_prefix, get_urlconf, reverse
from django.utils.translation import get_language


def endpoint_path(route: str, service: str) -> str:
    """``reverse("django_report_export:<route>", kwargs={"service": service})``."""
    # Keyed by the URLconf's resolver, not its name: Django makes a new resolver whenever its
    # URL caches are cleared (clear_url_caches(), as tests that swap URL patterns call), so a
    # path reversed before is never found after.
    resolver = get_resolver(get_urlconf())
    return _reversed(resolver, get_script_prefix(), get_language(), route, service)


@lru_cache(maxsize=1024)
def _reversed(resolver: Any, prefix: str, language: str | None, route: str, service: str) -> str:
    return reverse(
        f"django_report_export:{route}",
        urlconf=resolver.urlconf_name,
        kwargs={"service": service},
    )
