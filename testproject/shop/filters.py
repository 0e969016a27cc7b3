"""FilterSets of the demo shop's export services.

Every filter is typed, so a value that does not parse (``total_min=abc``, ``is_active=maybe``,
``created_after=yesterday``) is a form error, never a silently ignored filter.
"""

from __future__ import annotations

import datetime as dt
from functools import reduce
from operator import or_
from typing import Any

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django_filters.constants import EMPTY_VALUES

from .models import (
    Category,
    Currency,
    CustomerAccount,
    DataFeed,
    DataFeedTemplate,
    Inquiry,
    InventoryItem,
    NewsletterSubscriber,
    Order,
    Product,
    ProductRating,
    SeoView,
    Transaction,
    Voucher,
    VoucherPreset,
    VoucherTemplate,
)

DATE_OR_DATETIME_HELP = (
    "A date (YYYY-MM-DD, the whole day counts) or an ISO 8601 date-time "
    "(without offset: the shop's time zone)."
)


class DateOrDateTimeField(forms.Field):
    """A ``date`` for ``YYYY-MM-DD``, else an aware ``datetime`` from ISO 8601."""

    default_error_messages = {
        "invalid": "Enter a date (YYYY-MM-DD) or an ISO 8601 date-time.",
    }
    #: How the API schema describes the values (django_report_export.api.schema).
    openapi_schema = {
        "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]
    }

    def to_python(self, value: Any) -> dt.date | dt.datetime | None:
        if value in EMPTY_VALUES:
            return None
        if isinstance(value, dt.date):
            parsed: dt.date | dt.datetime | None = value
        else:
            text = str(value).strip()
            try:
                parsed = parse_date(text) or parse_datetime(text)
            except ValueError:
                parsed = None
        if parsed is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        if isinstance(parsed, dt.datetime) and timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed)
        return parsed


class DateOrDateTimeFilter(django_filters.Filter):
    """Compares a datetime field with a date-time, or (for a plain date) with its local date."""

    field_class = DateOrDateTimeField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", DATE_OR_DATETIME_HELP)
        super().__init__(*args, **kwargs)

    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        if value in EMPTY_VALUES:
            return qs
        path = self.field_name if isinstance(value, dt.datetime) else f"{self.field_name}__date"
        return self.get_method(qs)(**{f"{path}__{self.lookup_expr}": value})


def after(field_name: str) -> DateOrDateTimeFilter:
    return DateOrDateTimeFilter(field_name=field_name, lookup_expr="gte")


def before(field_name: str) -> DateOrDateTimeFilter:
    return DateOrDateTimeFilter(field_name=field_name, lookup_expr="lte")


class StrictBooleanField(forms.Field):
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``); anything else is an error."""

    widget = forms.Select(choices=[("", "---------"), ("true", "Yes"), ("false", "No")])
    default_error_messages = {"invalid": "Enter true or false."}
    openapi_schema = {"type": "boolean"}
    TRUE = frozenset({"true", "1", "yes", "on"})
    FALSE = frozenset({"false", "0", "no", "off"})

    def to_python(self, value: Any) -> bool | None:
        if value in EMPTY_VALUES:
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        raise forms.ValidationError(self.error_messages["invalid"], code="invalid")


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class IntegerFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField


class SearchFilter(django_filters.CharFilter):
    """Case-insensitive substring match on any of ``search_fields``."""

    def __init__(self, *search_fields: str, **kwargs: Any) -> None:
        self.search_fields = search_fields
        kwargs.setdefault("help_text", f"Substring of {', '.join(search_fields)}.")
        super().__init__(**kwargs)

    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        if value in EMPTY_VALUES:
            return qs
        query = reduce(or_, (Q(**{f"{f}__icontains": value}) for f in self.search_fields))
        return qs.filter(query)


class AdminUserFilter(django_filters.FilterSet):
    search = SearchFilter("username", "email", "first_name", "last_name")
    is_superuser = BooleanFilter()
    is_active = BooleanFilter()
    joined_after = after("date_joined")
    joined_before = before("date_joined")
    last_login_after = after("last_login")

    class Meta:
        model = get_user_model()
        fields: list[str] = []


class CategoryFilter(django_filters.FilterSet):
    parent = IntegerFilter(field_name="parent_id")
    root = BooleanFilter(field_name="parent", lookup_expr="isnull")
    is_active = BooleanFilter()
    search = SearchFilter("name", "slug")
    product_search = SearchFilter(
        "products__sku",
        "products__name",
        help_text="Categories holding a product whose SKU or name contains this.",
    )

    class Meta:
        model = Category
        fields: list[str] = []


class CustomerAccountFilter(django_filters.FilterSet):
    email = django_filters.CharFilter(lookup_expr="iexact")
    search = SearchFilter("email", "first_name", "last_name", "company")
    country = django_filters.CharFilter(lookup_expr="iexact")
    is_active = BooleanFilter()
    created_after = after("created_at")
    created_before = before("created_at")
    last_login_after = after("last_login_at")
    credit_balance_min = django_filters.NumberFilter(field_name="credit_balance", lookup_expr="gte")

    class Meta:
        model = CustomerAccount
        fields: list[str] = []


class DataFeedTemplateFilter(django_filters.FilterSet):
    feed_format = django_filters.ChoiceFilter(choices=DataFeedTemplate.FeedFormat.choices)
    search = SearchFilter("name")
    created_after = after("created_at")
    created_before = before("created_at")

    class Meta:
        model = DataFeedTemplate
        fields: list[str] = []


class DataFeedFilter(django_filters.FilterSet):
    channel = django_filters.ChoiceFilter(choices=DataFeed.Channel.choices)
    template = IntegerFilter(field_name="template_id")
    is_active = BooleanFilter()
    generated_after = after("last_generated_at")
    generated_before = before("last_generated_at")

    class Meta:
        model = DataFeed
        fields: list[str] = []


class InquiryFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Inquiry.Status.choices)
    customer = IntegerFilter(field_name="customer_id")
    email = django_filters.CharFilter(lookup_expr="iexact")
    answered = BooleanFilter(field_name="answered_at", lookup_expr="isnull", exclude=True)
    search = SearchFilter("subject", "message")
    created_after = after("created_at")
    created_before = before("created_at")

    class Meta:
        model = Inquiry
        fields: list[str] = []


class InventoryFilter(django_filters.FilterSet):
    warehouse = django_filters.ChoiceFilter(choices=InventoryItem.Warehouse.choices)
    product = IntegerFilter(field_name="product_id")
    product_sku = django_filters.CharFilter(field_name="product__sku", lookup_expr="iexact")
    quantity_below = IntegerFilter(field_name="quantity", lookup_expr="lt")
    needs_reorder = BooleanFilter(
        method="filter_needs_reorder",
        help_text="Available quantity (quantity - reserved) at or below the reorder level.",
    )
    updated_after = after("updated_at")

    class Meta:
        model = InventoryItem
        fields: list[str] = []

    def filter_needs_reorder(
        self, queryset: QuerySet[InventoryItem], name: str, value: bool | None
    ) -> QuerySet[InventoryItem]:
        if value is None:
            return queryset
        query = Q(quantity__lte=F("reserved") + F("reorder_level"))
        return queryset.filter(query) if value else queryset.exclude(query)


class OrderFilter(django_filters.FilterSet):
    number = django_filters.CharFilter(lookup_expr="iexact")
    status = django_filters.ChoiceFilter(choices=Order.Status.choices)
    customer = IntegerFilter(field_name="customer_id")
    customer_email = django_filters.CharFilter(field_name="customer__email", lookup_expr="iexact")
    created_after = after("created_at")
    created_before = before("created_at")
    paid = BooleanFilter(field_name="paid_at", lookup_expr="isnull", exclude=True)
    total_min = django_filters.NumberFilter(field_name="total", lookup_expr="gte")
    total_max = django_filters.NumberFilter(field_name="total", lookup_expr="lte")
    currency = django_filters.ChoiceFilter(choices=Currency.choices)
    payment_method = django_filters.ChoiceFilter(choices=Order.PaymentMethod.choices)
    shipping_country = django_filters.CharFilter(lookup_expr="iexact")
    transaction_status = django_filters.ChoiceFilter(
        field_name="transactions__status",
        choices=Transaction.Status.choices,
        help_text="Orders with at least one transaction in this status.",
    )

    class Meta:
        model = Order
        fields: list[str] = []


class NewsletterSubscriberFilter(django_filters.FilterSet):
    email = django_filters.CharFilter(lookup_expr="iexact")
    customer = IntegerFilter(field_name="customer_id")
    confirmed = BooleanFilter()
    subscribed = BooleanFilter(
        field_name="unsubscribed_at",
        lookup_expr="isnull",
        help_text="true: still subscribed; false: unsubscribed.",
    )
    source = django_filters.ChoiceFilter(choices=NewsletterSubscriber.Source.choices)
    subscribed_after = after("subscribed_at")
    subscribed_before = before("subscribed_at")

    class Meta:
        model = NewsletterSubscriber
        fields: list[str] = []


class ProductFilter(django_filters.FilterSet):
    category = IntegerFilter(field_name="category_id")
    category_slug = django_filters.CharFilter(field_name="category__slug")
    is_active = BooleanFilter()
    search = SearchFilter("sku", "name")
    stock_below = IntegerFilter(field_name="stock", lookup_expr="lt")
    price_min = django_filters.NumberFilter(field_name="price", lookup_expr="gte")
    price_max = django_filters.NumberFilter(field_name="price", lookup_expr="lte")
    created_after = after("created_at")
    created_before = before("created_at")

    class Meta:
        model = Product
        fields: list[str] = []


class ProductRatingFilter(django_filters.FilterSet):
    product = IntegerFilter(field_name="product_id")
    product_sku = django_filters.CharFilter(field_name="product__sku", lookup_expr="iexact")
    customer = IntegerFilter(field_name="customer_id")
    rating_min = IntegerFilter(field_name="rating", lookup_expr="gte", min_value=1, max_value=5)
    rating_max = IntegerFilter(field_name="rating", lookup_expr="lte", min_value=1, max_value=5)
    is_approved = BooleanFilter()
    created_after = after("created_at")
    created_before = before("created_at")

    class Meta:
        model = ProductRating
        fields: list[str] = []


class SeoViewFilter(django_filters.FilterSet):
    url = django_filters.CharFilter(lookup_expr="icontains")
    date_from = django_filters.DateFilter(field_name="date", lookup_expr="gte")
    date_to = django_filters.DateFilter(field_name="date", lookup_expr="lte")
    views_min = IntegerFilter(field_name="views", lookup_expr="gte")

    class Meta:
        model = SeoView
        fields: list[str] = []


class TransactionFilter(django_filters.FilterSet):
    order = IntegerFilter(field_name="order_id")
    order_number = django_filters.CharFilter(field_name="order__number", lookup_expr="iexact")
    kind = django_filters.ChoiceFilter(choices=Transaction.Kind.choices)
    provider = django_filters.ChoiceFilter(choices=Transaction.Provider.choices)
    status = django_filters.ChoiceFilter(choices=Transaction.Status.choices)
    amount_min = django_filters.NumberFilter(field_name="amount", lookup_expr="gte")
    amount_max = django_filters.NumberFilter(field_name="amount", lookup_expr="lte")
    currency = django_filters.ChoiceFilter(choices=Currency.choices)
    created_after = after("created_at")
    created_before = before("created_at")

    class Meta:
        model = Transaction
        fields: list[str] = []


class VoucherFilter(django_filters.FilterSet):
    code = django_filters.CharFilter(lookup_expr="iexact")
    preset = IntegerFilter(field_name="preset_id")
    template = IntegerFilter(field_name="template_id")
    customer = IntegerFilter(field_name="customer_id")
    customer_email = django_filters.CharFilter(field_name="customer__email", lookup_expr="iexact")
    is_active = BooleanFilter()
    redeemed = BooleanFilter(field_name="redeemed_at", lookup_expr="isnull", exclude=True)
    currency = django_filters.ChoiceFilter(choices=Currency.choices)
    valid_on = django_filters.DateFilter(
        method="filter_valid_on", help_text="Vouchers valid on this date (YYYY-MM-DD)."
    )
    created_after = after("created_at")
    created_before = before("created_at")

    class Meta:
        model = Voucher
        fields: list[str] = []

    def filter_valid_on(
        self, queryset: QuerySet[Voucher], name: str, value: dt.date | None
    ) -> QuerySet[Voucher]:
        if value is None:
            return queryset
        return queryset.filter(valid_from__lte=value, valid_until__gte=value)


class VoucherPresetFilter(django_filters.FilterSet):
    is_percentage = BooleanFilter()
    currency = django_filters.ChoiceFilter(choices=Currency.choices)
    value_min = django_filters.NumberFilter(field_name="value", lookup_expr="gte")
    value_max = django_filters.NumberFilter(field_name="value", lookup_expr="lte")

    class Meta:
        model = VoucherPreset
        fields: list[str] = []


class VoucherTemplateFilter(django_filters.FilterSet):
    language = django_filters.CharFilter(lookup_expr="iexact")
    search = SearchFilter("name", "subject")
    created_after = after("created_at")
    created_before = before("created_at")

    class Meta:
        model = VoucherTemplate
        fields: list[str] = []
