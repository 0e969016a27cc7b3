"""Declaring services: the registry, autodiscovery and the system checks."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core import checks
from django.test import override_settings

from django_report_export.checks import check_settings
from django_report_export.exceptions import (
    AlreadyRegistered,
    ExportConfigurationError,
    UnknownService,
)
from django_report_export.registry import ExportService, ServiceRegistry, register, site
from testproject.shop.models import Order, Product


def run_checks() -> list[checks.CheckMessage]:
    """The system checks without a database: from Django 6.0 on, ``run_checks()`` hands every
    database alias to the model checks, and Django's JSONField check then asks SQLite whether
    it supports JSON (a query). The package's own checks never use a database."""
    return checks.run_checks(databases=[])


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
    # The demo's 16, and the suite's flat orders (tests/support/keyed/apps.py).
    assert len(site.names()) == 17


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


# --- one check id per mistake in a setting's value (the table of settings, conf.py) ----------


@pytest.mark.parametrize(
    ("value", "check_id", "message"),
    [
        ({"HEARTBEAT_INTERVAL": 0}, "E010", "must be a number > 0"),
        ({"HEARTBEAT_INTERVAL": "5"}, "E010", "must be a number > 0"),
        ({"CHECKPOINT_INTERVAL": -1}, "E011", "must be a number >= 0"),
        ({"CHECKPOINT_INTERVAL": None}, "E011", "must be a number >= 0"),
        ({"MAX_RETRIES": -1}, "E012", "must be an integer >= 0"),
        ({"MAX_RETRIES": 1.5}, "E012", "must be an integer >= 0"),
        ({"JOB_TIMEOUT": 0}, "E013", "must be an integer >= 1, or -1 (no timeout)"),
        ({"JOB_TIMEOUT": "forever"}, "E013", "must be an integer >= 1, or -1 (no timeout)"),
        ({"REDIS_TIMEOUT": 0}, "E014", "must be a number > 0"),
        ({"REDIS_TIMEOUT": None}, "E014", "must be a number > 0"),
        ({"RETENTION_DAYS": -1}, "E015", "must be an integer >= 0"),
        ({"RETENTION_DAYS": "30"}, "E015", "must be an integer >= 0"),
    ],
)
def test_a_value_out_of_its_range_has_its_own_check_id(value, check_id, message):
    (key,) = value
    with override_settings(REPORT_EXPORT=value):
        found = [(error.id, error.msg) for error in check_settings()]
    assert found == [(f"django_report_export.{check_id}", f"REPORT_EXPORT[{key!r}] {message}.")]


@pytest.mark.parametrize(
    ("value", "check_id"),
    [
        ({"CSV_DELIMITER": "tab"}, "E017"),
        ({"CSV_BOM": "yes"}, "E018"),
        ({"CSV_LINE_ENDING": "\r\n"}, "E019"),
        ({"CSV_DECIMAL_SEPARATOR": ";"}, "E020"),
        ({"CSV_HEADER": "labels "}, "E021"),
        ({"TIMEZONE": "Mars/Olympus"}, "E022"),
        ({"TIMEZONE": ""}, "E022"),
    ],
)
def test_a_file_option_default_out_of_its_choices_has_its_own_check_id(value, check_id):
    with override_settings(REPORT_EXPORT=value):
        found = [error.id for error in check_settings()]
    assert found == [f"django_report_export.{check_id}"]


@pytest.mark.parametrize(
    "value",
    [
        {"STALE_AFTER": 5},
        {"HEARTBEAT_INTERVAL": 60},
        {"STALE_AFTER": 2, "HEARTBEAT_INTERVAL": 3.5},
    ],
)
def test_stale_after_not_longer_than_a_heartbeat_is_E016(value):
    with override_settings(REPORT_EXPORT=value):
        errors = check_settings()
    stale_after = value.get("STALE_AFTER", 30)
    heartbeat = value.get("HEARTBEAT_INTERVAL", 5)
    assert [(error.id, error.msg) for error in errors] == [
        (
            "django_report_export.E016",
            f"REPORT_EXPORT['STALE_AFTER'] ({stale_after!r}) must be greater than "
            f"HEARTBEAT_INTERVAL ({heartbeat!r}): a running export would be taken as lost "
            "between two of its heartbeats, and continued by a second worker.",
        )
    ]


@pytest.mark.parametrize(
    "value",
    [
        {"HEARTBEAT_INTERVAL": 0.5, "STALE_AFTER": 0.75},
        {"CHECKPOINT_INTERVAL": 0, "MAX_RETRIES": 0, "RETENTION_DAYS": 0},
        {"JOB_TIMEOUT": -1, "REDIS_TIMEOUT": 0.25},
        {"JOB_TIMEOUT": 1, "REDIS_TIMEOUT": 5},
    ],
)
def test_values_at_the_edge_of_their_range_pass(value):
    with override_settings(REPORT_EXPORT=value):
        assert check_settings() == []


def test_a_fractional_chunk_size_is_E007():
    with override_settings(REPORT_EXPORT={"CHUNK_SIZE": 2.5}):
        found = [(error.id, error.msg) for error in check_settings()]
    assert found == [
        ("django_report_export.E007", "REPORT_EXPORT['CHUNK_SIZE'] must be an integer >= 1.")
    ]
