"""The demo shop registers the 16 services of the seed, each one sound."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from django_report_export.columns import column_names, column_paths, selection
from django_report_export.registry import resolve_field_path, site
from testproject.shop import factories

from .support.demo import DEMO_FORMATS
from .support.keyed.exports import ORDER_ROW

pytestmark = pytest.mark.django_db

SERVICES = list(DEMO_FORMATS)
RESERVED_PARAMETERS = {"format", "fields", "compression"}
SECRET_WORDS = ("password", "secret", "token", "hash", "key")


def test_registry_holds_exactly_the_sixteen_services():
    """And the suite's flat orders (``tests.support.keyed``), which the demo does not ship."""
    assert sorted(name for name in site.names() if name != ORDER_ROW) == sorted(DEMO_FORMATS)
    assert ORDER_ROW in site


@pytest.mark.parametrize("name", SERVICES)
def test_formats_are_exactly_the_seeds(name):
    assert list(site.get(name).formats) == DEMO_FORMATS[name]


@pytest.mark.parametrize("name", SERVICES)
def test_fields_start_with_id_and_resolve_on_the_model(name):
    service = site.get(name)
    names = column_names(service)
    assert names[0] == "id"
    assert len(set(names)) == len(names)
    for path in column_paths(service):
        assert resolve_field_path(service.model, path), path


@pytest.mark.parametrize("name", SERVICES)
def test_default_permission_is_a_real_permission(name):
    service = site.get(name)
    assert service.permission is None
    app_label, codename = service.get_permission().split(".")
    opts = service.model._meta
    assert (app_label, codename) == (opts.app_label, f"view_{opts.model_name}")
    assert Permission.objects.filter(content_type__app_label=app_label, codename=codename).exists()


@pytest.mark.parametrize("name", SERVICES)
def test_filterset_is_declared_and_does_not_shadow_start_parameters(name):
    service = site.get(name)
    assert service.filterset_class is not None
    assert service.filterset_class._meta.model is service.model
    names = service.get_filter_names()
    assert names
    assert not RESERVED_PARAMETERS & set(names)


def test_admin_user_exports_staff_and_nothing_secret():
    service = site.get("adminUser")
    assert service.model._meta.label == "auth.User"
    assert not [f for f in service.fields for word in SECRET_WORDS if word in f.lower()]
    staff = factories.StaffUserFactory()
    superuser = factories.SuperUserFactory()
    customer = factories.UserFactory()
    exported = set(service.get_queryset().values_list("username", flat=True))
    assert {staff.username, superuser.username} <= exported
    assert customer.username not in exported


def test_every_service_queries_its_fields_on_factory_data():
    for factory in (
        factories.StaffUserFactory,
        factories.CategoryFactory,
        factories.CustomerAccountFactory,
        factories.DataFeedFactory,
        factories.InquiryFactory,
        factories.InventoryItemFactory,
        factories.NewsletterSubscriberFactory,
        factories.ProductRatingFactory,
        factories.SeoViewFactory,
        factories.TransactionFactory,
        factories.VoucherFactory,
        factories.VoucherPresetFactory,
        factories.VoucherTemplateFactory,
        factories.DataFeedTemplateFactory,
        factories.OrderFactory,
        factories.ProductFactory,
    ):
        factory.create_batch(3)
    for name in SERVICES:
        service = site.get(name)
        names = column_names(service)
        items = selection(service, names).items  # the flat columns (documents' members aside)
        rows = list(service.get_queryset().order_by("pk").values_list(*items))
        assert rows, name
        assert all(len(row) == len(items) for row in rows)


def filterset(name, **data):
    service = site.get(name)
    return service.filterset_class(data=data, queryset=service.get_queryset())


@pytest.mark.parametrize(
    ("name", "parameter", "value"),
    [
        ("order", "status", "teleported"),
        ("order", "total_min", "abc"),
        ("order", "customer", "1.5"),
        ("order", "created_after", "yesterday"),
        ("order", "created_before", "2024-02-30"),
        ("order", "paid", "maybe"),
        ("order", "currency", "DOGE"),
        ("product", "is_active", "perhaps"),
        ("product", "stock_below", "ten"),
        ("product", "category", "books"),
        ("product", "price_max", "1,5"),
        ("productRating", "rating_min", "6"),
        ("seoViews", "date_from", "2024-13-01"),
        ("voucher", "valid_on", "soon"),
        ("adminUser", "is_superuser", "2"),
        ("inventory", "needs_reorder", "sometimes"),
    ],
)
def test_invalid_filter_values_are_form_errors(name, parameter, value):
    fs = filterset(name, **{parameter: value})
    assert not fs.is_valid()
    assert parameter in fs.errors


def test_order_filters():
    berlin = timezone.get_current_timezone()
    alice = factories.CustomerAccountFactory(email="alice@example.com")
    early = factories.OrderFactory(
        customer=alice,
        status="paid",
        total=Decimal("10.00"),
        created_at=dt.datetime(2024, 1, 31, 23, 30, tzinfo=berlin),
    )
    late = factories.OrderFactory(
        status="cancelled",
        total=Decimal("1234567.89"),
        created_at=dt.datetime(2024, 2, 1, 0, 30, tzinfo=berlin),
    )

    def numbers(**data):
        fs = filterset("order", **data)
        assert fs.is_valid(), fs.errors
        return set(fs.qs.values_list("number", flat=True))

    assert numbers() == {early.number, late.number}
    assert numbers(status="paid") == {early.number}
    assert numbers(customer_email="ALICE@example.com") == {early.number}
    assert numbers(customer=str(alice.pk)) == {early.number}
    assert numbers(total_min="100", total_max="1234567.89") == {late.number}
    assert numbers(created_before="2024-01-31") == {early.number}
    assert numbers(created_after="2024-02-01") == {late.number}
    assert numbers(created_after="2024-01-31T23:00:00+01:00") == {early.number, late.number}
    assert numbers(created_after="2024-01-31T22:45:00Z") == {late.number}
    assert numbers(created_after="2024-01-31", created_before="2024-01-31") == {early.number}


def test_product_filters():
    books = factories.CategoryFactory(slug="books")
    cheap = factories.ProductFactory(category=books, price=Decimal("0.10"), stock=0, is_active=True)
    dear = factories.ProductFactory(price=Decimal("999.99"), stock=50, is_active=False)

    def skus(**data):
        fs = filterset("product", **data)
        assert fs.is_valid(), fs.errors
        return set(fs.qs.values_list("sku", flat=True))

    assert skus(category=str(books.pk)) == {cheap.sku}
    assert skus(category_slug="books") == {cheap.sku}
    assert skus(stock_below="1") == {cheap.sku}
    assert skus(price_min="1", price_max="1000") == {dear.sku}
    assert skus(is_active="false") == {dear.sku}
    assert skus(is_active="TRUE") == {cheap.sku}
    assert skus(search=dear.sku.lower()) == {dear.sku}
