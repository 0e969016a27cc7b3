"""factory-boy factories for every shop model.

A share of the values are deliberately awkward (unicode, quotes, commas, newlines, leading
``=``/``+``/``-``/``@``, characters XML 1.0 forbids, nulls, extreme decimals), so exports of
factory-made rows really exercise quoting, escaping and number formatting.
``factory.random.reseed_random(seed)`` makes them reproducible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from decimal import Decimal
from operator import attrgetter
from typing import Any, TypeVar

import factory
import faker
from django.contrib.auth import get_user_model
from factory.random import randgen

from .models import (
    Address,
    Category,
    Currency,
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

T = TypeVar("T")

AWKWARD_SHARE = 0.2
NULL_SHARE = 0.3

AWKWARD_NAMES: tuple[str, ...] = (
    "Zoë Ünïcødé 日本 🎉",
    "O'Brien",
    'Anna "Annie"',
    "Smith, Jr.",
    "=cmd|' /C calc'!A0",
    "+Plus",
    "-Minus",
    "@At",
    "Ærøskøbing-Łódź",
    "Ñandú <b>&amp;</b>",
)
AWKWARD_TEXTS: tuple[str, ...] = (
    "Zoë Ünïcødé 日本 🎉",
    'She said "hello", then left.',
    "comma, separated, values",
    "first line\nsecond line\r\nthird line",
    '=HYPERLINK("http://example.com";"click")',
    "=1+2",
    "+49 30 1234567",
    "-42",
    "@SUM(A1:A9)",
    "\tleading tab",
    "\rleading carriage return",
    "semi;colon;separated",
    "<tag attr='x'>&amp; ]]> </tag>",
    "back\\slash and 'single' quotes",
    "control\x0bchars\x1fhere\x7f",
    "   padded with spaces   ",
    "",
)
AWKWARD_AMOUNTS: tuple[Decimal, ...] = (
    Decimal("0.10"),
    Decimal("0.01"),
    Decimal("0.00"),
    Decimal("1234567.89"),
    Decimal("999.99"),
    Decimal("100.00"),
)

fake = faker.Faker(["en_GB", "de_DE", "fr_FR", "es_ES", "it_IT"])
TZ = dt.UTC


def chance(share: float) -> bool:
    return randgen.random() < share


def awkward(make: Callable[[], T], pool: Sequence[Any] = AWKWARD_TEXTS) -> Any:
    """A declaration giving ``make()``, or (``AWKWARD_SHARE`` of the time) an awkward value."""
    return factory.LazyFunction(lambda: randgen.choice(pool) if chance(AWKWARD_SHARE) else make())


def nullable(make: Callable[[], T], share: float = NULL_SHARE) -> Any:
    """A declaration giving ``make()``, or ``None`` ``share`` of the time."""
    return factory.LazyFunction(lambda: None if chance(share) else make())


def money(low: int = 1, high: int = 500) -> Any:
    """A Decimal amount with cents, sometimes an awkward one (0.10, 1234567.89, ...)."""
    return awkward(
        lambda: Decimal(randgen.randint(low * 100, high * 100)).scaleb(-2), AWKWARD_AMOUNTS
    )


def past(start: str = "-2y") -> Callable[[], dt.datetime]:
    return lambda: fake.date_time_between(start_date=start, end_date="now", tzinfo=TZ)


def after(path: str, max_hours: int = 72) -> Callable[[Any], dt.datetime]:
    """A moment up to ``max_hours`` after the datetime at dotted ``path`` of the object."""
    get = attrgetter(path)

    def make(obj: Any) -> dt.datetime:
        base: dt.datetime = get(obj)
        return base + dt.timedelta(minutes=randgen.randint(1, max_hours * 60))

    return make


class UserFactory(factory.django.DjangoModelFactory):
    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    first_name = awkward(fake.first_name, AWKWARD_NAMES)
    last_name = awkward(fake.last_name, AWKWARD_NAMES)
    password = factory.django.Password("password")
    is_active = True

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True


class StaffUserFactory(UserFactory):
    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True
    last_login = nullable(past("-90d"))


class SuperUserFactory(StaffUserFactory):
    username = factory.Sequence(lambda n: f"super{n}")
    is_superuser = True


class CategoryFactory(factory.django.DjangoModelFactory):
    name = awkward(lambda: fake.word().title(), AWKWARD_NAMES)
    slug = factory.Sequence(lambda n: f"category-{n}")
    parent = None
    description = awkward(fake.sentence)
    is_active = factory.LazyFunction(lambda: chance(0.9))
    sort_order = factory.Sequence(int)
    created_at = factory.LazyFunction(past())

    class Meta:
        model = Category


class CustomerAccountFactory(factory.django.DjangoModelFactory):
    email = factory.Sequence(
        lambda n: f"o'brien+{n}@example.com" if n % 7 == 3 else f"customer{n}@example.com"
    )
    first_name = awkward(fake.first_name, AWKWARD_NAMES)
    last_name = awkward(fake.last_name, AWKWARD_NAMES)
    phone = awkward(fake.phone_number)
    company = awkward(lambda: fake.company() if chance(0.4) else "")
    birth_date = nullable(lambda: fake.date_of_birth(minimum_age=18, maximum_age=90))
    country = factory.LazyFunction(lambda: randgen.choice(["DE", "AT", "CH", "FR", "GB", "IT"]))
    city = awkward(fake.city, AWKWARD_NAMES)
    postal_code = factory.LazyFunction(fake.postcode)
    street = awkward(fake.street_address)
    is_active = factory.LazyFunction(lambda: chance(0.95))
    credit_balance = money(0, 200)
    created_at = factory.LazyFunction(past())
    last_login_at = nullable(past("-30d"))

    class Meta:
        model = CustomerAccount


class DataFeedTemplateFactory(factory.django.DjangoModelFactory):
    name = awkward(lambda: f"{fake.word().title()} feed template")
    feed_format = factory.LazyFunction(lambda: randgen.choice(DataFeedTemplate.FeedFormat.values))
    body = factory.LazyAttribute(
        lambda o: {
            "csv": 'sku,name,price\n{% for p in products %}{{ p.sku }},"{{ p.name }}",'
            "{{ p.price }}\n{% endfor %}",
            "tsv": "sku\tname\tprice\n{% for p in products %}{{ p.sku }}\t{{ p.name }}\t"
            "{{ p.price }}\n{% endfor %}",
            "xml": '<?xml version="1.0"?>\n<items>{% for p in products %}\n  <item id="{{ '
            'p.sku }}"><title>{{ p.name }}</title></item>{% endfor %}\n</items>',
            "json": '[{% for p in products %}{"sku": "{{ p.sku }}", "name": "{{ p.name }}"}'
            "{% if not forloop.last %},{% endif %}{% endfor %}]",
        }[o.feed_format]
    )
    created_at = factory.LazyFunction(past())

    class Meta:
        model = DataFeedTemplate


class DataFeedFactory(factory.django.DjangoModelFactory):
    name = awkward(lambda: f"{fake.company()} feed")
    template = factory.SubFactory(DataFeedTemplateFactory)
    channel = factory.LazyFunction(lambda: randgen.choice(DataFeed.Channel.values))
    url = factory.Sequence(lambda n: f"https://feeds.example.com/{n}/products.feed?lang=de&x=1")
    is_active = factory.LazyFunction(lambda: chance(0.8))
    item_count = factory.LazyFunction(lambda: randgen.randint(0, 50_000))
    created_at = factory.LazyFunction(past())
    last_generated_at = nullable(past("-7d"))

    class Meta:
        model = DataFeed


class ProductFactory(factory.django.DjangoModelFactory):
    sku = factory.Sequence(lambda n: f"TST-{n:06d}")
    name = awkward(lambda: f"{fake.word().title()} {fake.word()}")
    category = factory.SubFactory(CategoryFactory)
    description = awkward(lambda: fake.paragraph(nb_sentences=3))
    price = money(1, 2000)
    cost = factory.LazyAttribute(lambda o: (o.price * Decimal("0.55")).quantize(Decimal("0.01")))
    stock = factory.LazyFunction(lambda: randgen.randint(-5, 500))
    is_active = factory.LazyFunction(lambda: chance(0.9))
    weight_grams = factory.LazyFunction(lambda: randgen.randint(0, 25_000))
    ean = factory.LazyFunction(lambda: "" if chance(0.1) else fake.ean13())
    created_at = factory.LazyFunction(past())

    class Meta:
        model = Product


class InventoryItemFactory(factory.django.DjangoModelFactory):
    product = factory.SubFactory(ProductFactory)
    warehouse = factory.Iterator(InventoryItem.Warehouse.values)
    quantity = factory.LazyFunction(lambda: randgen.randint(-2, 1000))
    reserved = factory.LazyFunction(lambda: randgen.randint(0, 20))
    reorder_level = factory.LazyFunction(lambda: randgen.choice([5, 10, 25, 50]))

    class Meta:
        model = InventoryItem


class AddressFactory(factory.django.DjangoModelFactory):
    name = awkward(fake.name, AWKWARD_NAMES)
    company = factory.LazyFunction(lambda: fake.company() if chance(0.2) else "")
    street = awkward(fake.street_address)
    postal_code = factory.LazyFunction(fake.postcode)
    city = factory.LazyFunction(fake.city)
    country = factory.LazyFunction(lambda: randgen.choice(["DE", "AT", "CH", "FR", "GB"]))

    class Meta:
        model = Address


class OrderFactory(factory.django.DjangoModelFactory):
    number = factory.Sequence(lambda n: f"T{n:09d}")
    customer = factory.SubFactory(CustomerAccountFactory)
    status = factory.LazyFunction(lambda: randgen.choice(Order.Status.values))
    currency = factory.LazyFunction(lambda: randgen.choice(Currency.values))
    subtotal = money(1, 3000)
    shipping = factory.LazyFunction(lambda: randgen.choice([Decimal("0.00"), Decimal("4.95")]))
    tax = factory.LazyAttribute(lambda o: (o.subtotal * Decimal("0.19")).quantize(Decimal("0.01")))
    total = factory.LazyAttribute(lambda o: o.subtotal + o.shipping + o.tax)
    item_count = factory.LazyFunction(lambda: randgen.randint(1, 8))
    payment_method = factory.LazyFunction(lambda: randgen.choice(Order.PaymentMethod.values))
    shipping_country = factory.LazyAttribute(lambda o: o.customer.country)
    note = awkward(lambda: "" if chance(0.7) else fake.sentence())
    created_at = factory.LazyFunction(past())
    paid_at = factory.LazyAttribute(
        lambda o: None if o.status in ("pending", "cancelled") else after("created_at")(o)
    )
    shipped_at = factory.LazyAttribute(
        lambda o: after("paid_at")(o) if o.status in ("shipped", "delivered") else None
    )

    class Meta:
        model = Order


class OrderLineFactory(factory.django.DjangoModelFactory):
    """A line of ``order`` (its totals are the caller's to keep in step)."""

    order = factory.SubFactory(OrderFactory)
    product = factory.SubFactory(ProductFactory)
    sku = factory.SelfAttribute("product.sku")
    title = factory.SelfAttribute("product.name")
    quantity = factory.LazyFunction(lambda: randgen.choice([1, 1, 1, 2, 3]))
    unit_price = factory.SelfAttribute("product.price")
    tax_rate = factory.LazyFunction(lambda: randgen.choice([Decimal("19.00"), Decimal("7.00")]))
    line_total = factory.LazyAttribute(lambda o: o.quantity * o.unit_price)

    class Meta:
        model = OrderLine


class TransactionFactory(factory.django.DjangoModelFactory):
    order = factory.SubFactory(OrderFactory)
    reference = factory.Sequence(lambda n: f"txn_test_{n:08d}")
    kind = Transaction.Kind.CHARGE
    provider = factory.LazyFunction(lambda: randgen.choice(Transaction.Provider.values))
    amount = factory.LazyAttribute(lambda o: o.order.total)
    currency = factory.LazyAttribute(lambda o: o.order.currency)
    status = factory.LazyFunction(lambda: randgen.choice(Transaction.Status.values))
    created_at = factory.LazyAttribute(after("order.created_at", max_hours=1))

    class Meta:
        model = Transaction


class InquiryFactory(factory.django.DjangoModelFactory):
    class Params:
        guest = factory.LazyFunction(lambda: chance(NULL_SHARE))

    customer = factory.Maybe(
        "guest", yes_declaration=None, no_declaration=factory.SubFactory(CustomerAccountFactory)
    )
    email = factory.LazyAttribute(
        lambda o: o.customer.email if o.customer else f"guest{randgen.randrange(10**6)}@example.net"
    )
    subject = awkward(fake.sentence)
    message = awkward(
        lambda: f"Hello,\n\n{fake.paragraph()}\n\n{fake.paragraph()}\n\nRegards,\n{fake.name()}"
    )
    status = factory.LazyFunction(lambda: randgen.choice(Inquiry.Status.values))
    created_at = factory.LazyFunction(past())
    answered_at = factory.LazyAttribute(
        lambda o: None if o.status == Inquiry.Status.OPEN else after("created_at")(o)
    )

    class Meta:
        model = Inquiry


class NewsletterSubscriberFactory(factory.django.DjangoModelFactory):
    class Params:
        guest = factory.LazyFunction(lambda: chance(NULL_SHARE))

    customer = factory.Maybe(
        "guest", yes_declaration=None, no_declaration=factory.SubFactory(CustomerAccountFactory)
    )
    email = factory.LazyAttribute(
        lambda o: o.customer.email if o.customer else f"reader{randgen.randrange(10**6)}@mail.test"
    )
    confirmed = factory.LazyFunction(lambda: chance(0.8))
    source = factory.LazyFunction(lambda: randgen.choice(NewsletterSubscriber.Source.values))
    subscribed_at = factory.LazyFunction(past())
    unsubscribed_at = factory.LazyAttribute(
        lambda o: after("subscribed_at", max_hours=24 * 90)(o) if chance(0.2) else None
    )

    class Meta:
        model = NewsletterSubscriber


class ProductRatingFactory(factory.django.DjangoModelFactory):
    product = factory.SubFactory(ProductFactory)
    customer = factory.SubFactory(CustomerAccountFactory)
    rating = factory.LazyFunction(lambda: randgen.randint(1, 5))
    title = awkward(lambda: fake.sentence(nb_words=4))
    comment = awkward(lambda: fake.paragraph() if chance(0.8) else "")
    is_approved = factory.LazyFunction(lambda: chance(0.85))
    created_at = factory.LazyFunction(past())

    class Meta:
        model = ProductRating


class SeoViewFactory(factory.django.DjangoModelFactory):
    url = factory.Sequence(lambda n: f"/p/{n}/?utm_source=news,letter&q=a%20b")
    page_title = awkward(fake.catch_phrase)
    date = factory.LazyFunction(lambda: fake.date_between(start_date="-1y", end_date="today"))
    views = factory.LazyFunction(lambda: randgen.randint(0, 50_000))
    unique_visitors = factory.LazyAttribute(lambda o: randgen.randint(0, o.views))
    bounce_rate = factory.LazyFunction(lambda: Decimal(randgen.randint(0, 10_000)).scaleb(-2))
    avg_seconds_on_page = factory.LazyFunction(lambda: randgen.randint(0, 900))

    class Meta:
        model = SeoView


class VoucherPresetFactory(factory.django.DjangoModelFactory):
    name = awkward(lambda: f"{randgen.choice([5, 10, 15, 20, 25, 50])} {fake.word()} voucher")
    value = money(1, 100)
    is_percentage = factory.LazyFunction(lambda: chance(0.3))
    currency = Currency.EUR
    validity_days = factory.LazyFunction(lambda: randgen.choice([30, 90, 365, 730]))
    min_order_value = money(0, 100)

    class Meta:
        model = VoucherPreset


class VoucherTemplateFactory(factory.django.DjangoModelFactory):
    name = awkward(lambda: f"{fake.word().title()} voucher mail")
    subject = awkward(lambda: "Your voucher: {{ code }}")
    body_html = factory.LazyFunction(
        lambda: (
            "<html><body>\n<h1>Hello {{ customer.first_name }},</h1>\n"
            f"<p>{fake.paragraph()}</p>\n<p>Code: <strong>{{{{ code }}}}</strong> "
            "&ndash; worth {{ value }} {{ currency }}</p>\n</body></html>"
        )
    )
    language = factory.LazyFunction(lambda: randgen.choice(["en", "de", "fr", "de-CH"]))
    created_at = factory.LazyFunction(past())

    class Meta:
        model = VoucherTemplate


class VoucherFactory(factory.django.DjangoModelFactory):
    code = factory.Sequence(lambda n: f"TEST-{n:08d}")
    preset = factory.Maybe(
        factory.LazyFunction(lambda: chance(0.8)),
        yes_declaration=factory.SubFactory(VoucherPresetFactory),
        no_declaration=None,
    )
    template = factory.Maybe(
        factory.LazyFunction(lambda: chance(0.5)),
        yes_declaration=factory.SubFactory(VoucherTemplateFactory),
        no_declaration=None,
    )
    customer = factory.Maybe(
        factory.LazyFunction(lambda: chance(1 - NULL_SHARE)),
        yes_declaration=factory.SubFactory(CustomerAccountFactory),
        no_declaration=None,
    )
    value = money(1, 100)
    currency = Currency.EUR
    valid_from = factory.LazyFunction(lambda: fake.date_between(start_date="-1y", end_date="today"))
    valid_until = factory.LazyAttribute(
        lambda o: o.valid_from + dt.timedelta(days=o.preset.validity_days if o.preset else 365)
    )
    redeemed_at = nullable(past("-30d"), share=0.7)
    is_active = factory.LazyFunction(lambda: chance(0.9))
    created_at = factory.LazyFunction(past())

    class Meta:
        model = Voucher
