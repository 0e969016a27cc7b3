"""``manage.py seed_shop`` fills the demo shop with the rows and users it promises."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import F
from django.utils import timezone

from testproject.shop.models import (
    Address,
    Category,
    CustomerAccount,
    DataFeed,
    DataFeedTemplate,
    Inquiry,
    InventoryItem,
    NewsletterSubscriber,
    Order,
    OrderLine,
    Product,
    ProductRating,
    SeoView,
    Transaction,
    Voucher,
    VoucherPreset,
    VoucherTemplate,
)

pytestmark = pytest.mark.django_db

#: What ``seed_shop --orders 40 --products 12`` creates (transactions: one per order, plus
#: one per refunded order).
COUNTS = {
    Order: 40,
    CustomerAccount: 10,
    Address: 20,  # one per customer, and one per country for orders sent elsewhere
    Product: 12,
    InventoryItem: 36,
    Category: 26,
    ProductRating: 8,
    Inquiry: 5,
    NewsletterSubscriber: 6,
    Voucher: 5,
    SeoView: 60,
    DataFeedTemplate: 6,
    DataFeed: 8,
    VoucherPreset: 8,
    VoucherTemplate: 6,
}


def seed(**options) -> str:
    out = io.StringIO()
    call_command("seed_shop", stdout=out, **{"orders": 40, "products": 12, "seed": 7, **options})
    return out.getvalue()


def fingerprint() -> list[tuple]:
    return (
        list(
            Order.objects.order_by("number").values_list(
                "number", "status", "total", "payment_method", "customer__email", "note"
            )
        )
        + list(
            OrderLine.objects.order_by("order__number", "pk").values_list(
                "order__number", "sku", "quantity", "unit_price", "line_total"
            )
        )
        + list(
            Order.objects.order_by("number").values_list(
                "billing_address__name", "shipping_address__city"
            )
        )
    )


def test_seed_creates_each_table_at_the_chosen_size():
    output = seed()
    assert {model: model.objects.count() for model in COUNTS} == COUNTS
    refunded = Order.objects.filter(status="refunded").count()
    assert Transaction.objects.count() == 40 + refunded
    assert Transaction.objects.filter(kind="charge").count() == 40
    assert "orders" in output
    assert "40 created" in output


def test_seed_creates_the_demo_superuser_and_staff():
    seed()
    user_model = get_user_model()
    admin = user_model.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.is_staff
    assert admin.is_active
    assert admin.check_password("admin")
    manager, support = (user_model.objects.get(username=n) for n in ("manager", "support"))
    assert manager.is_staff
    assert not manager.is_superuser
    assert manager.has_perm("shop.view_order")
    assert manager.has_perm("auth.view_user")
    assert support.has_perm("shop.view_inquiry")
    assert not support.has_perm("shop.view_product")


def test_seed_ships_one_enabled_schedule_that_validates():
    from django_report_export.models import ReportSchedule
    from django_report_export.schedules import schedule_errors

    output = seed(orders=5)
    (schedule,) = ReportSchedule.objects.all()
    assert schedule.enabled
    assert schedule.owner.username == "manager"
    assert schedule.next_run_at is not None
    assert schedule_errors(schedule) == {}
    assert "schedule: Payments for finance" in output
    seed(orders=0)  # a second seed keeps it, and adds none
    assert ReportSchedule.objects.count() == 1


def test_seed_keeps_an_existing_admin():
    user_model = get_user_model()
    user_model.objects.create_user("admin", "boss@example.com", "s3cret", is_staff=True)
    seed(orders=5)
    admin = user_model.objects.get(username="admin")
    assert admin.email == "boss@example.com"
    assert admin.check_password("s3cret")


FUTURE_CHECKS = [
    (Order, "created_at"),
    (Order, "shipped_at"),
    (Transaction, "created_at"),
    (Inquiry, "answered_at"),
    (NewsletterSubscriber, "unsubscribed_at"),
    (Voucher, "redeemed_at"),
    (CustomerAccount, "last_login_at"),
]


def test_seeded_rows_are_consistent():
    seed(orders=200)
    sums = Order.objects.values_list("subtotal", "shipping", "tax", "total")
    assert all(subtotal + shipping + tax == total for subtotal, shipping, tax, total in sums)
    assert not Order.objects.filter(status="pending", paid_at__isnull=False).exists()
    assert not Order.objects.filter(paid_at__lt=F("created_at")).exists()
    now = timezone.now()
    for model, field in FUTURE_CHECKS:
        assert not model.objects.filter(**{f"{field}__gt": now}).exists(), (model, field)
    assert not Transaction.objects.exclude(amount=F("order__total")).exists()
    assert not Order.objects.exclude(shipping_country=F("customer__country")).exists()
    assert Order.objects.values("customer").distinct().count() > 1
    assert CustomerAccount.objects.filter(birth_date__isnull=True).exists()
    assert CustomerAccount.objects.filter(credit_balance="1234567.89").exists()
    assert CustomerAccount.objects.filter(credit_balance="0.10").exists()
    assert Inquiry.objects.filter(message__contains="\n").count() == Inquiry.objects.count()
    assert Inquiry.objects.filter(customer__isnull=True).exists()


def test_seeded_orders_have_their_lines_and_addresses():
    seed(orders=400)
    counts = [order.lines.count() for order in Order.objects.prefetch_related("lines")]
    assert min(counts) == 1
    assert max(counts) == 8
    assert 2.5 <= sum(counts) / len(counts) <= 3.5
    for quantity, unit_price, line_total in OrderLine.objects.values_list(
        "quantity", "unit_price", "line_total"
    ):
        assert line_total == quantity * unit_price  # exact (SQLite multiplies floats: here)
    assert OrderLine.objects.filter(product__isnull=True).exists()  # gift cards
    assert (
        not OrderLine.objects.filter(product__isnull=False).exclude(sku=F("product__sku")).exists()
    )
    assert {str(rate) for rate in OrderLine.objects.values_list("tax_rate", flat=True)} <= {
        "19.00",
        "7.00",
        "0.00",
    }
    for order in Order.objects.prefetch_related("lines"):
        lines = list(order.lines.all())
        assert order.subtotal == sum(line.line_total for line in lines), order.number
        assert order.item_count == sum(line.quantity for line in lines), order.number
        assert order.tax <= order.subtotal
    assert not Order.objects.filter(billing_address__isnull=True).exists()
    assert Order.objects.filter(shipping_address__isnull=True).exists()
    assert (
        Order.objects.exclude(shipping_address=F("billing_address"))
        .filter(shipping_address__isnull=False)
        .exists()
    )
    assert (
        not Order.objects.filter(shipping_address__isnull=False)
        .exclude(shipping_address__country=F("shipping_country"))
        .exists()
    )
    assert not Order.objects.exclude(billing_address__country=F("customer__country")).exists()
    assert not Order.objects.filter(shipping_address__isnull=True).exclude(shipping=0).exists()


def test_same_seed_gives_the_same_shop_and_clear_empties_it_first():
    seed(seed=3)
    first = fingerprint()
    seed(seed=3, clear=True)
    assert fingerprint() == first
    assert Order.objects.count() == 40
    assert Order.objects.order_by("pk").first().number == "SO-00000001"
    seed(seed=4, clear=True)
    assert fingerprint() != first


def test_seeding_again_without_clear_adds_rows():
    seed()
    seed()
    assert Order.objects.count() == 80
    assert Product.objects.count() == 24
    assert Category.objects.count() == 52
    assert get_user_model().objects.filter(username="admin").count() == 1
