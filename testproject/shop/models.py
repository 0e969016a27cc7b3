"""The demo shop: the models behind the 16 export services."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

MONEY = {"max_digits": 12, "decimal_places": 2}
ZERO = Decimal("0.00")


class Currency(models.TextChoices):
    EUR = "EUR", "Euro"
    CHF = "CHF", "Swiss franc"
    GBP = "GBP", "Pound sterling"
    USD = "USD", "US dollar"


class Category(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=140, unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    sort_order = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class CustomerAccount(models.Model):
    email = models.EmailField(unique=True)
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    phone = models.CharField(max_length=40, blank=True)
    company = models.CharField(max_length=150, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2 code")
    city = models.CharField(max_length=100)
    postal_code = models.CharField(max_length=20)
    street = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    credit_balance = models.DecimalField(**MONEY, default=ZERO)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.email


class DataFeedTemplate(models.Model):
    class FeedFormat(models.TextChoices):
        CSV = "csv", "CSV"
        TSV = "tsv", "TSV"
        XML = "xml", "XML"
        JSON = "json", "JSON"

    name = models.CharField(max_length=120)
    feed_format = models.CharField(max_length=10, choices=FeedFormat.choices)
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class DataFeed(models.Model):
    class Channel(models.TextChoices):
        GOOGLE_SHOPPING = "google_shopping", "Google Shopping"
        IDEALO = "idealo", "idealo"
        META = "meta", "Meta catalogue"
        BILLIGER = "billiger", "billiger.de"
        AMAZON = "amazon", "Amazon"

    name = models.CharField(max_length=120)
    template = models.ForeignKey(DataFeedTemplate, on_delete=models.PROTECT, related_name="feeds")
    channel = models.CharField(max_length=30, choices=Channel.choices)
    url = models.URLField(max_length=300)
    is_active = models.BooleanField(default=True)
    item_count = models.PositiveIntegerField(default=0)
    last_generated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    sku = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    description = models.TextField(blank=True)
    price = models.DecimalField(**MONEY)
    cost = models.DecimalField(**MONEY)
    stock = models.IntegerField(default=0)
    is_active = models.BooleanField(default=True)
    weight_grams = models.PositiveIntegerField(default=0)
    ean = models.CharField("EAN", max_length=13, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class InventoryItem(models.Model):
    class Warehouse(models.TextChoices):
        BERLIN = "BER", "Berlin"
        HAMBURG = "HAM", "Hamburg"
        MUNICH = "MUC", "Munich"

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="inventory")
    warehouse = models.CharField(max_length=3, choices=Warehouse.choices)
    quantity = models.IntegerField(default=0)
    reserved = models.PositiveIntegerField(default=0)
    reorder_level = models.PositiveIntegerField(default=10)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["product", "warehouse"], name="shop_inventory_unique")
        ]

    def __str__(self) -> str:
        return f"{self.product_id}@{self.warehouse}"


class Address(models.Model):
    """A postal address an order is billed to or shipped to, as it was on the order."""

    name = models.CharField(max_length=200)
    company = models.CharField(max_length=150, blank=True)
    street = models.CharField(max_length=200)
    postal_code = models.CharField(max_length=20)
    city = models.CharField(max_length=100)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2 code")

    class Meta:
        verbose_name_plural = "addresses"

    def __str__(self) -> str:
        return f"{self.name}, {self.city}"


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PAID = "paid", "Paid"
        SHIPPED = "shipped", "Shipped"
        DELIVERED = "delivered", "Delivered"
        CANCELLED = "cancelled", "Cancelled"
        REFUNDED = "refunded", "Refunded"

    class PaymentMethod(models.TextChoices):
        CARD = "card", "Credit card"
        PAYPAL = "paypal", "PayPal"
        KLARNA = "klarna", "Klarna"
        INVOICE = "invoice", "Invoice"
        BANK_TRANSFER = "bank_transfer", "Bank transfer"

    number = models.CharField(max_length=32, unique=True)
    customer = models.ForeignKey(CustomerAccount, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=20, choices=Status.choices, db_index=True)
    currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.EUR)
    subtotal = models.DecimalField(**MONEY)
    shipping = models.DecimalField(**MONEY, default=ZERO)
    tax = models.DecimalField(**MONEY, default=ZERO)
    total = models.DecimalField(**MONEY)
    item_count = models.PositiveIntegerField(default=1)
    payment_method = models.CharField(max_length=20, choices=PaymentMethod.choices)
    shipping_country = models.CharField(max_length=2)
    billing_address = models.ForeignKey(
        Address, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    #: ``None`` for an order that ships nothing (a voucher, say).
    shipping_address = models.ForeignKey(
        Address, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.number


class OrderLine(models.Model):
    """One line of an order: the product, and its SKU, title and price as sold."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(
        Product, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    sku = models.CharField(max_length=40)
    title = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(**MONEY)
    #: Percent, e.g. ``19.00``.
    tax_rate = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("19.00"))
    line_total = models.DecimalField(**MONEY)

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"


class Transaction(models.Model):
    class Kind(models.TextChoices):
        CHARGE = "charge", "Charge"
        REFUND = "refund", "Refund"

    class Provider(models.TextChoices):
        STRIPE = "stripe", "Stripe"
        PAYPAL = "paypal", "PayPal"
        KLARNA = "klarna", "Klarna"
        BANK = "bank", "Bank"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="transactions")
    reference = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.EUR)
    status = models.CharField(max_length=10, choices=Status.choices)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return self.reference


class Inquiry(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ANSWERED = "answered", "Answered"
        CLOSED = "closed", "Closed"

    #: Inquiries come from a public contact form: their keys are UUIDs, not a guessable count.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(
        CustomerAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="inquiries"
    )
    email = models.EmailField()
    subject = models.CharField(max_length=200)
    message = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "inquiries"

    def __str__(self) -> str:
        return self.subject


class NewsletterSubscriber(models.Model):
    class Source(models.TextChoices):
        CHECKOUT = "checkout", "Checkout"
        FOOTER = "footer", "Footer form"
        POPUP = "popup", "Pop-up"
        IMPORT = "import", "Import"

    email = models.EmailField()
    customer = models.ForeignKey(
        CustomerAccount,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="newsletter_subscriptions",
    )
    confirmed = models.BooleanField(default=False)
    source = models.CharField(max_length=10, choices=Source.choices)
    subscribed_at = models.DateTimeField(default=timezone.now)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.email


class ProductRating(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="ratings")
    customer = models.ForeignKey(CustomerAccount, on_delete=models.CASCADE, related_name="ratings")
    rating = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    title = models.CharField(max_length=200, blank=True)
    comment = models.TextField(blank=True)
    is_approved = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rating__gte=1, rating__lte=5), name="shop_rating_1_to_5"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rating}/5 {self.title}"


class SeoView(models.Model):
    url = models.CharField("URL", max_length=300)
    page_title = models.CharField(max_length=200)
    date = models.DateField()
    views = models.PositiveIntegerField(default=0)
    unique_visitors = models.PositiveIntegerField(default=0)
    bounce_rate = models.DecimalField(max_digits=5, decimal_places=2, help_text="percent")
    avg_seconds_on_page = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "SEO view"
        constraints = [models.UniqueConstraint(fields=["url", "date"], name="shop_seoview_unique")]

    def __str__(self) -> str:
        return f"{self.url} {self.date}"


class VoucherPreset(models.Model):
    name = models.CharField(max_length=120)
    value = models.DecimalField(**MONEY)
    is_percentage = models.BooleanField(default=False)
    currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.EUR)
    validity_days = models.PositiveIntegerField(default=365)
    min_order_value = models.DecimalField(**MONEY, default=ZERO)

    def __str__(self) -> str:
        return self.name


class VoucherTemplate(models.Model):
    name = models.CharField(max_length=120)
    subject = models.CharField(max_length=200)
    body_html = models.TextField()
    language = models.CharField(max_length=10, default="en")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Voucher(models.Model):
    code = models.CharField(max_length=32, unique=True)
    preset = models.ForeignKey(
        VoucherPreset, null=True, blank=True, on_delete=models.SET_NULL, related_name="vouchers"
    )
    template = models.ForeignKey(
        VoucherTemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="vouchers"
    )
    customer = models.ForeignKey(
        CustomerAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="vouchers"
    )
    value = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.EUR)
    valid_from = models.DateField()
    valid_until = models.DateField()
    redeemed_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.code
