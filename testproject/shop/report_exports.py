"""The demo shop's 16 export services (autodiscovered by django_report_export)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import DecimalField, ExpressionWrapper, F, QuerySet
from django.utils.translation import gettext_lazy as _

from django_report_export.columns import Collection, Column, Nested
from django_report_export.registry import ExportService, register

from . import filters
from .models import (
    Category,
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

#: The seed's formats, and the spreadsheet and JSON Lines files beside them.
JSON_CSV = ("json", "csv", "xlsx", "jsonl")


@register("adminUser")
class AdminUserExport(ExportService):
    """Staff accounts. Never the password hash, nor anything else secret."""

    model = get_user_model()
    fields = (
        "id",
        "username",
        "email",
        "first_name",
        "last_name",
        "is_staff",
        "is_superuser",
        "is_active",
        "date_joined",
        "last_login",
    )
    formats = JSON_CSV
    filterset_class = filters.AdminUserFilter
    description = "Staff users (admin accounts) of the shop."

    def get_queryset(self) -> QuerySet[Any]:
        return self.model._default_manager.filter(is_staff=True)


@register("category")
class CategoryExport(ExportService):
    model = Category
    fields = (
        "id",
        "name",
        "slug",
        Column("parent_id", label=_("Parent ID")),
        Column("parent_name", "parent__name", label=_("Parent category")),
        "description",
        "is_active",
        "sort_order",
        "created_at",
    )
    formats = JSON_CSV
    filterset_class = filters.CategoryFilter
    description = "Product categories, with their parent."


@register("customerAccount")
class CustomerAccountExport(ExportService):
    model = CustomerAccount
    fields = (
        "id",
        "email",
        "first_name",
        "last_name",
        "phone",
        "company",
        "birth_date",
        "street",
        "postal_code",
        "city",
        "country",
        "is_active",
        "credit_balance",
        "created_at",
        "last_login_at",
    )
    formats = JSON_CSV
    filterset_class = filters.CustomerAccountFilter
    description = "Customer accounts with address and credit balance."


@register("dataFeed")
class DataFeedExport(ExportService):
    model = DataFeed
    fields = (
        "id",
        "name",
        "channel",
        Column("template_id", label=_("Template ID")),
        Column("template_name", "template__name", label=_("Template")),
        "url",
        "is_active",
        "item_count",
        "last_generated_at",
        "created_at",
    )
    formats = JSON_CSV
    filterset_class = filters.DataFeedFilter
    description = "Product data feeds for price comparison and marketplace channels."


@register("dataFeedTemplate")
class DataFeedTemplateExport(ExportService):
    model = DataFeedTemplate
    fields = ("id", "name", "feed_format", "body", "created_at")
    formats = JSON_CSV
    filterset_class = filters.DataFeedTemplateFilter
    description = "Templates the data feeds are rendered with."


@register("inquiry")
class InquiryExport(ExportService):
    model = Inquiry
    fields = (
        "id",
        "created_at",
        "status",
        "email",
        Column("customer_id", label=_("Customer ID")),
        Column("customer_email", "customer__email", label=_("Customer e-mail")),
        "subject",
        "message",
        "answered_at",
    )
    formats = ("json", "csv", "xml", "xlsx", "jsonl")
    filterset_class = filters.InquiryFilter
    description = "Customer inquiries sent through the contact form."


@register("inventory")
class InventoryExport(ExportService):
    model = InventoryItem
    fields = (
        "id",
        Column("product_id", label=_("Product ID")),
        Column("product_sku", "product__sku", label=_("Product SKU")),
        Column("product_name", "product__name", label=_("Product")),
        "warehouse",
        "quantity",
        "reserved",
        "reorder_level",
        "updated_at",
    )
    formats = JSON_CSV
    filterset_class = filters.InventoryFilter
    description = "Stock per product and warehouse."


#: An order's net amount, computed by the database (decimal places given: SQLite computes in
#: floats, and the export rounds to them).
NET = ExpressionWrapper(
    F("total") - F("tax"), output_field=DecimalField(max_digits=13, decimal_places=2)
)
ADDRESS = ["name", "company", "street", "postal_code", "city", "country"]


@register("order")
class OrderExport(ExportService):
    """Orders as documents: the customer's columns under plain names, the billing and shipping
    addresses as objects, the lines and payments as lists."""

    model = Order
    fields = (
        "id",
        "number",
        "created_at",
        Column("status", display=True),
        Column("customer_email", "customer__email"),
        Column("customer_first_name", "customer__first_name"),
        Column("customer_last_name", "customer__last_name"),
        "currency",
        "subtotal",
        "shipping",
        "tax",
        "total",
        Column("net", NET),
        "item_count",
        Column("payment_method", display=True),
        "paid_at",
        "note",
        Nested("billing_address", "billing_address", ADDRESS),
        Nested("shipping_address", "shipping_address", ADDRESS),
        Collection(
            "lines",
            "lines",
            ["sku", "title", "quantity", "unit_price", "tax_rate", "line_total"],
            item="line",
        ),
        Collection(
            "payments",
            "transactions",
            [
                "reference",
                Column("kind", display=True),
                Column("provider", display=True),
                "amount",
                "currency",
                Column("status", display=True),
                "created_at",
            ],
            order_by=["created_at"],
            item="payment",
        ),
    )
    formats = ("json", "xml", "jsonl")
    filterset_class = filters.OrderFilter
    description = "Orders with customer, totals, addresses, lines and payments."
    incremental_field = "created_at"


@register("newsletterSubscriber")
class NewsletterSubscriberExport(ExportService):
    model = NewsletterSubscriber
    fields = (
        "id",
        "email",
        Column("customer_id", label=_("Customer ID")),
        "confirmed",
        "source",
        "subscribed_at",
        "unsubscribed_at",
    )
    formats = JSON_CSV
    filterset_class = filters.NewsletterSubscriberFilter
    description = "Newsletter subscriptions, confirmed or not."


@register("product")
class ProductExport(ExportService):
    model = Product
    fields = (
        "id",
        "sku",
        "name",
        Column("category_id", label=_("Category ID")),
        Column("category_name", "category__name", label=_("Category")),
        "price",
        "cost",
        "stock",
        "is_active",
        "weight_grams",
        "ean",
        "description",
        "created_at",
        "updated_at",
    )
    formats = JSON_CSV
    filterset_class = filters.ProductFilter
    description = "The product catalogue with prices and stock."


@register("productRating")
class ProductRatingExport(ExportService):
    model = ProductRating
    fields = (
        "id",
        Column("product_sku", "product__sku", label=_("Product SKU")),
        Column("product_name", "product__name", label=_("Product")),
        Column("customer_email", "customer__email", label=_("Customer e-mail")),
        "rating",
        "title",
        "comment",
        "is_approved",
        "created_at",
    )
    formats = JSON_CSV
    filterset_class = filters.ProductRatingFilter
    description = "Customer ratings and reviews of products."


@register("seoViews")
class SeoViewsExport(ExportService):
    model = SeoView
    fields = (
        "id",
        "date",
        "url",
        "page_title",
        "views",
        "unique_visitors",
        "bounce_rate",
        "avg_seconds_on_page",
    )
    formats = JSON_CSV
    filterset_class = filters.SeoViewFilter
    description = "Daily page views per URL."


@register("transaction")
class TransactionExport(ExportService):
    model = Transaction
    fields = (
        "id",
        "reference",
        Column("order_number", "order__number", label=_("Order number")),
        Column("customer_email", "order__customer__email", label=_("Customer e-mail")),
        "kind",
        "provider",
        "amount",
        "currency",
        "status",
        "created_at",
    )
    formats = JSON_CSV
    filterset_class = filters.TransactionFilter
    description = "Payment charges and refunds."
    incremental_field = "created_at"


@register("voucher")
class VoucherExport(ExportService):
    model = Voucher
    fields = (
        "id",
        "code",
        Column("preset_name", "preset__name", label=_("Preset")),
        Column("template_name", "template__name", label=_("E-mail template")),
        Column("customer_email", "customer__email", label=_("Customer e-mail")),
        "value",
        "currency",
        "valid_from",
        "valid_until",
        "redeemed_at",
        "is_active",
        "created_at",
    )
    formats = JSON_CSV
    filterset_class = filters.VoucherFilter
    description = "Issued voucher codes."


@register("voucherPreset")
class VoucherPresetExport(ExportService):
    model = VoucherPreset
    fields = (
        "id",
        "name",
        "value",
        "is_percentage",
        "currency",
        "validity_days",
        "min_order_value",
    )
    formats = JSON_CSV
    filterset_class = filters.VoucherPresetFilter
    description = "Voucher presets (value and validity)."


@register("voucherTemplate")
class VoucherTemplateExport(ExportService):
    model = VoucherTemplate
    fields = ("id", "name", "subject", "body_html", "language", "created_at")
    formats = JSON_CSV
    filterset_class = filters.VoucherTemplateFilter
    description = "E-mail templates vouchers are sent with."
