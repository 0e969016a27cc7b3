"""Declaring services: the registry, autodiscovery and the system checks."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from django.test import override_settings

from django_report_export.exceptions import (
    AlreadyRegistered,
    ExportConfigurationError,
    UnknownService,
)
from django_report_export.registry import ExportService, ServiceRegistry, register, site
from testproject.shop.models import Order, Product


def check_ids() -> list[str]:
    return [message.id for message in run_checks() if message.id.startswith("django_report")]


@pytest.fixture
def registered():
    """Register services into the real site for one test, then remove them."""
    names: list[str] = []

    def add(name: str, service_class: type[ExportService]) -> None:
        site.register(name, service_class)
        names.append(name)

    yield add
    for name in names:
        site.unregister(name)


def test_register_decorator_sets_name_and_default_permission():
    registry = ServiceRegistry()

    @register("cheapProducts", registry=registry)
    class CheapProducts(ExportService):
        model = Product
        fields = ("id", "sku", "category__name")

    service = registry.get("cheapProducts")
    assert service.name == "cheapProducts"
    assert service.get_permission() == "shop.view_product"
    assert registry.names() == ["cheapProducts"]


def test_explicit_permission_and_queryset():
    class Orders(ExportService):
        model = Order
        fields = ("id",)
        permission = "shop.change_order"

        def get_queryset(self):
            return super().get_queryset().filter(status="paid")

    registry = ServiceRegistry()
    registry.register("paidOrders", Orders)
    service = registry.get("paidOrders")
    assert service.get_permission() == "shop.change_order"
    assert "paid" in str(service.get_queryset().query)


def test_duplicate_name_names_both_classes():
    registry = ServiceRegistry()

    class A(ExportService):
        model = Product
        fields = ("id",)

    class B(A):
        pass

    registry.register("x", A)
    with pytest.raises(AlreadyRegistered, match=r"registered twice.*\.A and by .*\.B"):
        registry.register("x", B)


@pytest.mark.parametrize("name", ["", "a/b"])
def test_invalid_name(name):
    class A(ExportService):
        model = Product
        fields = ("id",)

    with pytest.raises(ExportConfigurationError, match="Invalid export service name"):
        ServiceRegistry().register(name, A)


def test_service_without_model():
    class NoModel(ExportService):
        fields = ("id",)

    with pytest.raises(ExportConfigurationError, match="declares no model"):
        ServiceRegistry().register("x", NoModel)


def test_unknown_service():
    with pytest.raises(UnknownService, match="nope"):
        site.get("nope")


def test_autodiscovery_registered_the_demo_services():
    assert "order" in site
    assert len(site.names()) == 16


def test_demo_declarations_pass_the_checks():
    assert check_ids() == []


def test_unknown_field_path_is_E003(registered):
    class Broken(ExportService):
        model = Order
        fields = ("id", "customer__shoe_size")

    registered("broken", Broken)
    messages = [m for m in run_checks() if m.id == "django_report_export.E003"]
    assert len(messages) == 1
    assert "customer__shoe_size" in messages[0].msg
    assert "shop.Order" in messages[0].msg


def test_format_nobody_writes_is_E004(registered):
    class Broken(ExportService):
        model = Order
        fields = ("id",)
        formats = ("json", "pdf")

    registered("broken", Broken)
    messages = [m for m in run_checks() if m.id == "django_report_export.E004"]
    assert len(messages) == 1
    assert "'pdf'" in messages[0].msg


def test_no_fields_is_E005(registered):
    class Empty(ExportService):
        model = get_user_model()

    registered("empty", Empty)
    assert "django_report_export.E005" in check_ids()


def test_unknown_queue_is_E001(settings):
    settings.REPORT_EXPORT = {"QUEUE": "nowhere", "STORAGE": "exports"}
    assert check_ids() == ["django_report_export.E001"]


def test_unknown_storage_is_E002(settings):
    settings.REPORT_EXPORT = {"STORAGE": "nowhere"}
    assert check_ids() == ["django_report_export.E002"]


def test_unknown_database_is_E006(settings):
    settings.REPORT_EXPORT = {"DATABASE_ALIAS": "replica", "STORAGE": "exports"}
    assert check_ids() == ["django_report_export.E006"]


@pytest.mark.parametrize(
    "value",
    [
        {"CHUNKSIZE": 10},
        {"CHUNK_SIZE": 0},
        {"SLOT_SCOPE": "team"},
        {"DOWNLOAD": 1},
        {"SHARD_ROWS": 0},
        {"SHARD_ROWS": "many"},
        {"MAX_SHARDS": 0},
        {"MAX_SHARDS": True},
        {"PERMISSION_CACHE_SECONDS": -1},
    ],
)
def test_invalid_settings_are_E007(value):
    with override_settings(REPORT_EXPORT=value):
        assert "django_report_export.E007" in check_ids()
