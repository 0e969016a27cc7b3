"""drf-spectacular's generator and auto schema for the reporter API: one path per registered
service (``/api/report/order/start``), each with its own formats, fields and filters, where
drf-spectacular alone describes one generic ``{service}`` path. The schema is cached."""

from __future__ import annotations

import copy
import threading
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.translation import get_language

from django_report_export.api.schema.parameters import SHARED_SCHEMAS, service_parameters
from django_report_export.formats import format_names
from django_report_export.registry import site

try:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.openapi import AutoSchema
except ImportError:  # pragma: no cover - drf-spectacular is optional
    AutoSchema = object  # type: ignore[assignment,misc]
    SchemaGenerator = object  # type: ignore[assignment,misc]


class ReportAutoSchema(AutoSchema):
    """drf-spectacular's schema, but for the listing: one array, not a page of one.

    The viewset has a ``pagination_class`` for history, which paginates by hand (and is
    described as such below); drf-spectacular would otherwise wrap the listing, the viewset's
    ``list`` action, in a page object it never is.
    """

    def _get_paginator(self) -> None:
        return None

    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        """The generic operation, or, on a service's own path, that service's operation."""
        operation = super().get_operation(*args, **kwargs)
        service = getattr(self.view, "service", None)
        if operation is None or service is None:
            return operation
        operation["parameters"] = service_parameters(service, getattr(self.view, "action", ""))
        operation["tags"] = [service.name]
        return operation


class ReportSchemaGenerator(SchemaGenerator):
    """drf-spectacular's generator, with the report endpoints on one path per service.

    Each ``report/{service}/...`` endpoint becomes ``report/<name>/...`` for every registered
    service, described by ``service_parameters``. The schema is built once per URLconf,
    registry, format registry, API version and language (building it walks every service's
    FilterSet), and again after a settings change.
    """

    _cache: dict[Any, Any] = {}
    _lock = threading.Lock()

    def _get_paths_and_endpoints(self) -> list[tuple[str, str, str, Any]]:
        """The endpoints, each report one once per service, grouped by service."""
        endpoints = []
        per_service: dict[str, list[tuple[str, str, str, Any]]] = {
            name: [] for name in site.names()
        }
        generic: Any = self.endpoints  # (path, regex, method, callback) in drf-spectacular
        for path, path_regex, method, callback in generic:
            if "{service}" not in path or not is_report_view(callback):
                view = self.create_view(callback, method)
                endpoints.append((self.coerce_path(path, method, view), path_regex, method, view))
                continue
            for service in site:
                view = self.create_view(callback, method)
                view.service = service
                view.kwargs = {"service": service.name}
                service_path = path.replace("{service}", service.name)
                per_service[service.name].append((service_path, path_regex, method, view))
        for service_endpoints in per_service.values():
            endpoints.extend(service_endpoints)
        return endpoints

    def get_schema(self, request: Any = None, public: bool = False) -> Any:
        if not public:  # filtered by the requesting user's permissions: not shared
            return with_shared_schemas(super().get_schema(request=request, public=public))
        key = self.cache_key()
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            cached = with_shared_schemas(super().get_schema(request=request, public=public))
            with self._lock:
                self._cache[key] = cached
        return copy.deepcopy(cached)

    def cache_key(self) -> Any:
        services = tuple((service.name, type(service), id(service)) for service in site)
        urlconf = self.urlconf or settings.ROOT_URLCONF
        return (
            urlconf if isinstance(urlconf, str) else id(urlconf),
            id(self.patterns) if self.patterns is not None else None,
            services,
            tuple(format_names()),
            self.api_version,
            get_language(),
        )

    @classmethod
    def clear_cache(cls, **kwargs: Any) -> None:
        with cls._lock:
            cls._cache.clear()


setting_changed.connect(ReportSchemaGenerator.clear_cache)


def with_shared_schemas(schema: Any) -> Any:
    """``schema`` with the components the parameters refer to (``SHARED_SCHEMAS``)."""
    if isinstance(schema, dict):
        schema.setdefault("components", {}).setdefault("schemas", {}).update(SHARED_SCHEMAS)
    return schema


def is_report_view(callback: Any) -> bool:
    """Whether ``callback`` is a view of the reporter API (``ReportViewSet`` or a subclass),
    told by its marker so that the schema never imports the views that import it."""
    view_class = getattr(callback, "cls", None)
    return isinstance(view_class, type) and getattr(view_class, "report_export_api", False)
