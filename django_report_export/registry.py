"""The service registry: export definitions declared in code, like ``ModelAdmin``.

# shop/report_exports.py (autodiscovered)
from django_report_export.registry import ExportService, register

@register("order")
class OrderExport(ExportService):
    model = Order
    fields = ["id", "number", "customer__email", "total", "created_at"]
    formats = ["json", "xml"]
    filterset_class = OrderFilter
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import django_filters
from django.contrib.admin.utils import get_fields_from_path
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.module_loading import autodiscover_modules

from django_report_export.exceptions import (
    AlreadyRegistered,
    ExportConfigurationError,
    UnknownService,
)

AUTODISCOVER_MODULE = "report_exports"
#: Service names appear in URLs, storage paths and Redis keys: a letter, then letters, digits,
#: ``_`` or ``-``, at most 100 characters (the length of ``ReportExport.service``).
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}")


class ExportService:
    """One exportable service. Subclass it, set the attributes, register it."""

    name: str = ""
    model: ClassVar[type[models.Model]]
    #: What is exported, in order: field paths (relations followed with ``__``; the path is
    #: the column's name), and ``columns.Column``, ``Nested`` and ``Collection`` entries
    #: (docs/declaring-services.md).
    fields: Sequence[Any] = ()
    #: The name of a ``Collection`` of ``fields`` that csv writes one row per item of (the
    #: record's other columns repeated on each); ``None``: a document service offers no csv.
    flatten: str | None = None
    #: Format names (keys of the format registry) this service may be exported as.
    formats: Sequence[str] = ("json", "csv")
    filterset_class: type[django_filters.FilterSet] | None = None
    #: ``app_label.codename`` granting read access; ``<app_label>.view_<model_name>`` if unset.
    permission: str | None = None
    #: A short human description, shown in the listing and the admin.
    description: str = ""
    #: Key-range shards an export is split into (parallel jobs); ``None``: by ``SHARD_ROWS``.
    shards: int | None = None
    #: Webhook endpoints told of this service's exports, beside ``REPORT_EXPORT["WEBHOOKS"]``:
    #: ``[{"url": ..., "secret": ..., "events": ["finished", ...]}]`` (events: all if unset).
    webhooks: Sequence[dict[str, Any]] = ()
    #: Addresses mailed when any export of this service ends (finished, canceled, error).
    notify_emails: Sequence[str] = ()
    #: A ``DateTimeField`` path (``updated_at``, ``paid_at``): starts may then ask for a window
    #: of it (``since=last``, ``from``/``to``; ``windows.py``).
    incremental_field: str | None = None

    def get_queryset(self) -> models.QuerySet[Any]:
        """The base queryset, before the caller's filters; override to narrow it."""
        return self.model._default_manager.all()

    def get_permission(self) -> str:
        if self.permission:
            return self.permission
        opts = self.model._meta
        return f"{opts.app_label}.view_{opts.model_name}"

    def get_filter_names(self) -> list[str]:
        if self.filterset_class is None:
            return []
        return list(self.filterset_class.base_filters)

    def has_permission(self, user: Any) -> bool:
        return bool(user and user.is_active and user.has_perm(self.get_permission()))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def resolve_field_path(model: type[models.Model], path: str) -> list[Any]:
    """The chain of model fields a ``__`` path walks; raises ``FieldDoesNotExist``."""
    try:
        return list(get_fields_from_path(model, path))
    except (FieldDoesNotExist, AttributeError) as exc:
        raise FieldDoesNotExist(f"{model.__name__} has no field path {path!r}") from exc


class ServiceRegistry:
    def __init__(self) -> None:
        self._services: dict[str, ExportService] = {}

    def register(self, name: str, service_class: type[ExportService]) -> type[ExportService]:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise ExportConfigurationError(
                f"Invalid export service name {name!r}: use a letter, then letters, digits, "
                "'_' or '-', at most 100 characters."
            )
        if name in self._services:
            existing = type(self._services[name])
            raise AlreadyRegistered(
                f"Export service {name!r} is registered twice: by "
                f"{existing.__module__}.{existing.__qualname__} and by "
                f"{service_class.__module__}.{service_class.__qualname__}."
            )
        if not isinstance(getattr(service_class, "model", None), type):
            raise ExportConfigurationError(f"Export service {name!r} declares no model.")
        service = service_class()
        service.name = name
        self._services[name] = service
        return service_class

    def unregister(self, name: str) -> None:
        self._services.pop(name, None)

    def get(self, name: str) -> ExportService:
        try:
            return self._services[name]
        except KeyError:
            raise UnknownService(f"Unknown service {name!r}.", service=None) from None

    def __contains__(self, name: object) -> bool:
        return name in self._services

    def __iter__(self) -> Iterator[ExportService]:
        return iter(self._services.values())

    def names(self) -> list[str]:
        return list(self._services)


site = ServiceRegistry()

S = TypeVar("S", bound=type[ExportService])


def register(name: str, *, registry: ServiceRegistry | None = None) -> Callable[[S], S]:
    """Class decorator registering an ``ExportService`` subclass under ``name``."""

    def decorator(service_class: S) -> S:
        (registry or site).register(name, service_class)
        return service_class

    return decorator


def autodiscover() -> None:
    autodiscover_modules(AUTODISCOVER_MODULE)
