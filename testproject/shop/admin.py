from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from django_report_export.admin.actions import ExportActionMixin

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

# Every admin whose model backs an export service gets the "Export selected ..." action(s).

admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class ShopUserAdmin(ExportActionMixin, UserAdmin):
    """Django's user admin, plus the adminUser export (staff only: the service's queryset)."""

    report_export_services = ["adminUser"]


@admin.register(Category)
class CategoryAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "parent", "is_active", "sort_order", "created_at"]
    list_filter = ["is_active", "parent"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    ordering = ["parent__name", "sort_order", "name"]


@admin.register(CustomerAccount)
class CustomerAccountAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = [
        "email",
        "first_name",
        "last_name",
        "company",
        "country",
        "city",
        "credit_balance",
        "is_active",
        "created_at",
    ]
    list_filter = ["is_active", "country", "created_at"]
    search_fields = ["email", "first_name", "last_name", "company", "city"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]


@admin.register(DataFeedTemplate)
class DataFeedTemplateAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = ["name", "feed_format", "created_at"]
    list_filter = ["feed_format"]
    search_fields = ["name", "body"]


@admin.register(DataFeed)
class DataFeedAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "channel",
        "template",
        "is_active",
        "item_count",
        "last_generated_at",
    ]
    list_filter = ["channel", "is_active", "template"]
    search_fields = ["name", "url"]
    list_select_related = ["template"]


@admin.register(Inquiry)
class InquiryAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = ["subject", "email", "status", "created_at", "answered_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["subject", "email", "message"]
    raw_id_fields = ["customer"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]


@admin.register(InventoryItem)
class InventoryItemAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = ["product", "warehouse", "quantity", "reserved", "reorder_level", "updated_at"]
    list_filter = ["warehouse"]
    search_fields = ["product__sku", "product__name"]
    raw_id_fields = ["product"]
    list_select_related = ["product"]


class TransactionInline(admin.TabularInline):
    model = Transaction
    extra = 0
    fields = ["reference", "kind", "provider", "amount", "currency", "status", "created_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Order)
class OrderAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = [
        "number",
        "customer",
        "status",
        "total",
        "currency",
        "payment_method",
        "shipping_country",
        "created_at",
    ]
    list_filter = ["status", "currency", "payment_method", "created_at"]
    search_fields = ["number", "customer__email", "customer__last_name"]
    raw_id_fields = ["customer"]
    list_select_related = ["customer"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    inlines = [TransactionInline]


@admin.register(NewsletterSubscriber)
class NewsletterSubscriberAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = ["email", "confirmed", "source", "subscribed_at", "unsubscribed_at"]
    list_filter = ["confirmed", "source", "subscribed_at"]
    search_fields = ["email"]
    raw_id_fields = ["customer"]
    ordering = ["-subscribed_at"]


@admin.register(Product)
class ProductAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = ["sku", "name", "category", "price", "stock", "is_active", "updated_at"]
    list_filter = ["is_active", "category"]
    search_fields = ["sku", "name", "ean"]
    list_select_related = ["category"]
    ordering = ["sku"]


@admin.register(ProductRating)
class ProductRatingAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = ["product", "customer", "rating", "title", "is_approved", "created_at"]
    list_filter = ["rating", "is_approved", "created_at"]
    search_fields = ["title", "comment", "product__sku", "customer__email"]
    raw_id_fields = ["product", "customer"]
    list_select_related = ["product", "customer"]
    ordering = ["-created_at"]


@admin.register(SeoView)
class SeoViewAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = ["date", "url", "page_title", "views", "unique_visitors", "bounce_rate"]
    list_filter = ["date"]
    search_fields = ["url", "page_title"]
    date_hierarchy = "date"
    ordering = ["-date", "url"]


@admin.register(Transaction)
class TransactionAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = ["reference", "order", "kind", "provider", "amount", "currency", "status"]
    list_filter = ["kind", "provider", "status", "currency", "created_at"]
    search_fields = ["reference", "order__number"]
    raw_id_fields = ["order"]
    list_select_related = ["order"]
    ordering = ["-created_at"]


@admin.register(VoucherPreset)
class VoucherPresetAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = ["name", "value", "is_percentage", "currency", "validity_days"]
    list_filter = ["is_percentage", "currency"]
    search_fields = ["name"]


@admin.register(VoucherTemplate)
class VoucherTemplateAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = ["name", "subject", "language", "created_at"]
    list_filter = ["language"]
    search_fields = ["name", "subject"]


@admin.register(Voucher)
class VoucherAdmin(ExportActionMixin, admin.ModelAdmin):
    list_display = [
        "code",
        "preset",
        "customer",
        "value",
        "currency",
        "valid_until",
        "redeemed_at",
        "is_active",
    ]
    list_filter = ["is_active", "currency", "preset", "valid_until"]
    search_fields = ["code", "customer__email"]
    raw_id_fields = ["customer"]
    list_select_related = ["preset", "customer"]
    ordering = ["-created_at"]
