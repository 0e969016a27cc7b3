"""Seed the demo shop: ``manage.py seed_shop --orders 100000 [--clear] [--seed 42]``.

The big tables are generated with ``random`` from small pools built once with Faker and
inserted with ``bulk_create`` in batches (100,000 orders with their related rows take about
half a minute on SQLite); the small tables come from the factories. The same ``--seed`` on an
empty shop gives the same rows (times are relative to today's date).
"""

from __future__ import annotations

import datetime as dt
import random
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import Any, TypeVar

import factory.random
import faker
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify

from django_report_export.models import ReportSchedule
from django_report_export.schedules import plan
from testproject.shop import factories
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

M = TypeVar("M", bound=models.Model)
T = TypeVar("T")

#: Children before parents: the order rows are deleted in and counts are printed in.
SHOP_MODELS: tuple[type[models.Model], ...] = (
    Transaction,
    OrderLine,
    ProductRating,
    InventoryItem,
    Voucher,
    NewsletterSubscriber,
    Inquiry,
    Order,
    Address,
    Product,
    Category,
    CustomerAccount,
    DataFeed,
    DataFeedTemplate,
    VoucherPreset,
    VoucherTemplate,
    SeoView,
)

BATCH = 2000
DEMO_PASSWORD_NOTE = "admin/admin (superuser), manager/manager and support/support (staff)"

CATEGORY_TREE: dict[str, list[str]] = {
    "Electronics": ["Phones", "Laptops", "Audio & Hi-Fi", "Cameras"],
    "Home & Garden": ["Kitchen", "Furniture", "Garden", "Lighting"],
    "Fashion": ["Women", "Men", "Kids' Clothing", "Shoes"],
    "Sports & Outdoors": ["Fitness", "Cycling", "Camping"],
    "Books & Media": ["Books", "Music", "Films & TV"],
    'Sale, "Outlet" & more': ["Zoë Ünïcødé 日本 🎉", "=Last chance"],
}
ADJECTIVES = (
    "Classic", "Compact", "Deluxe", "Eco", "Ergonomic", "Premium", "Smart", "Ultra", "Vintage",
    "Wireless", "Foldable", "Heavy-duty", "Lightweight", "Pro", "Mini",
)  # fmt: skip
NOUNS = (
    "Backpack", "Blender", "Headphones", "Jacket", "Kettle", "Lamp", "Notebook", "Pan",
    "Sneakers", "Speaker", "Tent", "Toaster", "Watch", "Yoga Mat", "Chair", "Bicycle Bell",
    "Camera Strap", "Desk", "Mug", "Phone Case",
)  # fmt: skip
AWKWARD_PRODUCT_NAMES = (
    'Monitor 27", 4K',
    "Zoë Ünïcødé 日本 🎉 Edition",
    "=SUM(A1:A2) Cable",
    "+1 Charger",
    "-20% Sticker",
    "@home Router",
    "Line\nbreak Lamp",
    "Kid's <Tablet> & Case",
)
ORDER_NOTES = (
    "Please leave the parcel with the neighbour.",
    "Gift wrap, please!",
    "Deliver after 5 pm, thanks",
    'Ring twice; name on the door says "Müller".',
    "Call me first:\n+49 30 1234567\nthanks",
    "=1+2",
    "@reception, 2nd floor",
    "-",
    "Zoë Ünïcødé 日本 🎉",
    "control\x0bchars\x1fhere",
)
RATING_TITLES = (
    "Great value", "Does what it says", "Not as described", "Love it!", "Meh.",
    "Broke after a week", "Five stars, would buy again", 'Good, but "premium"? No.',
    "Zoë Ünïcødé 日本 🎉", "=HYPERLINK(\"http://example.com\")",
)  # fmt: skip
RATING_COMMENTS = (
    "",
    "Arrived quickly and works fine.",
    "The colour is a bit different from the photo, otherwise fine.",
    "Pros:\n- sturdy\n- cheap\nCons:\n- loud",
    "Returned it, sorry.",
    "I'd give it 4.5 if I could, but the manual is only in German, French, and Italian.",
    "+++ recommended +++",
    "@seller: please answer my mail",
    "-1 star for the packaging",
)
INQUIRY_SUBJECTS = (
    "Where is my order?", "Invoice request", "Return / refund", "Product question",
    "Wrong size delivered", "Change my address", "Voucher not accepted", "Partnership",
    "Beschwerde: Lieferung beschädigt", "Zoë Ünïcødé 日本 🎉", "=cmd|' /C calc'!A0",
)  # fmt: skip
INQUIRY_BODIES = (
    "the parcel has not arrived yet. Can you check the tracking number?",
    "could you send me an invoice with my company's VAT ID, please?",
    "I'd like to return the item; it doesn't fit.",
    'does the "Pro" version come with a charger, or do I need to buy one?',
    "my voucher code says it's expired, but the mail says it's valid until next year.",
    "the box was damaged & the glass was broken.\n\nPhotos attached.",
    "<script>alert('hi')</script> is what your contact form showed me.",
    "control characters follow: \x0b\x1f\x7f end.",
)
SEO_STATIC_PAGES = (
    ("/", "Demo Shop \u2013 Home"),
    ("/cart/", "Your cart"),
    ("/checkout/", "Checkout"),
    ("/search/?q=zo%C3%AB", "Search: zoë"),
    ("/about/", "About us"),
    ("/contact/", "Contact"),
    ("/faq/", "FAQ, shipping & returns"),
    ("/blog/10-gift-ideas/", '10 gift ideas under 20 € \u2013 "the list"'),
    ("/landing/?utm_source=news,letter", "Newsletter landing"),
    ("/imprint/", "Imprint"),
)
LOCALES: dict[str, str] = {
    "de_DE": "DE", "de_AT": "AT", "de_CH": "CH", "fr_FR": "FR", "en_GB": "GB",
    "it_IT": "IT", "nl_NL": "NL", "es_ES": "ES", "pl_PL": "PL", "da_DK": "DK",
}  # fmt: skip
COUNTRY_WEIGHTS = (60, 8, 6, 6, 5, 4, 4, 3, 2, 2)
DOMAINS = ("example.com", "example.org", "example.net", "mail.test", "shop.test")
CURRENCIES = (("EUR", 90), ("CHF", 4), ("GBP", 4), ("USD", 2))
ORDER_STATUSES = (
    ("pending", 3), ("paid", 5), ("shipped", 6), ("delivered", 76), ("cancelled", 6),
    ("refunded", 4),
)  # fmt: skip
PAYMENT = (
    ("card", "stripe", 40), ("paypal", "paypal", 30), ("klarna", "klarna", 12),
    ("invoice", "bank", 10), ("bank_transfer", "bank", 8),
)  # fmt: skip
PRESETS = (
    ("Welcome 5 €", "5.00", False, 90, "20.00"),
    ("Spring sale 10 %", "10.00", True, 30, "0.00"),
    ("Loyalty 25 €", "25.00", False, 365, "100.00"),
    ("Gift card 50 €", "50.00", False, 730, "0.00"),
    ("Gift card 100 €", "100.00", False, 730, "0.00"),
    ("Staff 30 %", "30.00", True, 365, "0.00"),
    ("Test cent voucher", "0.10", False, 7, "0.00"),
    ('Corporate gift, "platinum"', "1234567.89", False, 365, "0.00"),
)
#: Gift cards' values in cents: orders of one ship nothing.
GIFT_CARDS = (2500, 5000, 10000)
CENT = Decimal("0.01")
#: The demo's schedule (docs/scheduled-and-incremental.md): finance's succeeded payments (and
#: refunds) as a spreadsheet, every morning at 06:00 in Berlin, started in the manager's name.
DEMO_SCHEDULE: dict[str, Any] = {
    "name": "Payments for finance",
    "service": "transaction",
    "format": "xlsx",
    "fields": [
        "reference",
        "created_at",
        "order_number",
        "customer_email",
        "kind",
        "amount",
        "currency",
        "provider",
    ],
    "filters": {"status": "succeeded"},
    "cron": "0 6 * * *",
    "timezone": "Europe/Berlin",
    "recipients": ["finance@demo-shop.test"],
}

STAFF_USERS = (
    # username, first name, last name, superuser, permissions (None: all of the services)
    ("admin", "Ada", "Admin", True, ()),
    ("manager", "Zoë", "Ünïcødé", False, None),
    ("support", "Sam", 'O\'Brien, "Ops"', False, ("customeraccount", "inquiry", "order")),
)


@dataclass
class Pools:
    first_names: list[str]
    last_names: list[str]
    addresses: list[tuple[str, str, str, str]]  # country, city, postal code, street
    companies: list[str]
    sentences: list[str]


def ascii_slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in ascii_text.lower() if c.isalnum()) or "x"


def cents(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def batched(items: Iterable[M], size: int = BATCH) -> Iterator[list[M]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def insert(model: type[M], objs: Iterable[M]) -> list[M]:
    """``bulk_create`` in batches; the created objects (with their pk) are returned."""
    created: list[M] = []
    for chunk in batched(objs):
        created.extend(model._default_manager.bulk_create(chunk, batch_size=BATCH))
    if created and created[0].pk is None:  # pragma: no cover - all supported backends return pks
        raise RuntimeError(f"The database did not return the primary keys of {model.__name__}.")
    return created


def weighted(pairs: Iterable[tuple[T, int]]) -> list[T]:
    """A list to ``random.choice`` from: each value repeated ``weight`` times."""
    return [value for value, weight in pairs for _ in range(weight)]


def next_key(model: type[models.Model]) -> int:
    """A number above every key of the rows already there (unique codes are built from it)."""
    return model._default_manager.aggregate(m=Max("pk"))["m"] or 0


class Command(BaseCommand):
    help = (
        "Fill the demo shop with realistic data: --orders N (default 1000), the other tables "
        "scaled to it. Creates the demo users " + DEMO_PASSWORD_NOTE + "."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=1000, help="Orders (default 1000).")
        parser.add_argument(
            "--customers", type=int, default=None, help="Customers (default orders / 5, min 10)."
        )
        parser.add_argument("--products", type=int, default=200, help="Products (default 200).")
        parser.add_argument("--seed", type=int, default=42, help="Random seed (default 42).")
        parser.add_argument(
            "--clear", action="store_true", help="Empty the shop tables first (users stay)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        orders: int = options["orders"]
        products: int = options["products"]
        customers: int = options["customers"] or max(10, orders // 5)
        if orders < 0 or customers < 1 or products < 1:
            raise CommandError("--orders must be >= 0, --customers and --products >= 1.")
        seed: int = options["seed"]
        rng = random.Random(seed)
        factories.fake.seed_instance(seed)
        factory.random.reseed_random(seed)
        before = {model: model._default_manager.count() for model in SHOP_MODELS}
        with transaction.atomic():
            if options["clear"]:
                self.clear()
                before = dict.fromkeys(SHOP_MODELS, 0)
            users = self.seed_users()
            self.seed_schedule()
            log = self.stdout.write if options["verbosity"] > 1 else None
            Seeder(rng, seed, log).run(orders=orders, customers=customers, products=products)
        if options["verbosity"] > 0:
            self.report(before, users, time.perf_counter() - started)

    def clear(self) -> None:
        tables = [model._meta.db_table for model in SHOP_MODELS]
        # MySQL/MariaDB's TRUNCATE (and resetting AUTO_INCREMENT) commits the transaction:
        # there the rows are deleted and new keys go on from the old ones.
        reset = connection.vendor != "mysql"
        sql = connection.ops.sql_flush(no_style(), tables, reset_sequences=reset)
        if connection.vendor == "postgresql":
            # TRUNCATE refuses tables with pending deferred FK checks in this transaction.
            sql = ["SET CONSTRAINTS ALL IMMEDIATE", *sql, "SET CONSTRAINTS ALL DEFERRED"]
        connection.ops.execute_sql_flush(sql)

    def seed_users(self) -> list[str]:
        user_model = get_user_model()
        services = Permission.objects.filter(
            content_type__app_label="shop", codename__startswith="view_"
        ) | Permission.objects.filter(content_type__app_label="auth", codename="view_user")
        created = []
        for username, first, last, superuser, perms in STAFF_USERS:
            if user_model._default_manager.filter(username=username).exists():
                continue
            user = user_model._default_manager.create_user(
                username,
                f"{username}@demo-shop.test",
                username,
                first_name=first,
                last_name=last,
                is_staff=True,
                is_superuser=superuser,
            )
            if perms is None:
                user.user_permissions.set(services)
            elif perms:
                user.user_permissions.set(
                    services.filter(codename__in=[f"view_{name}" for name in perms])
                )
            created.append(username)
        return created

    def seed_schedule(self) -> None:
        """The demo's one enabled schedule, unless one of its name is there (kept as edited)."""
        if ReportSchedule.objects.filter(name=DEMO_SCHEDULE["name"]).exists():
            return
        owner = get_user_model()._default_manager.filter(username="manager").first()
        schedule = ReportSchedule(**DEMO_SCHEDULE, owner=owner, enabled=True)
        schedule.next_run_at = plan(schedule)
        schedule.save()

    def report(
        self, before: dict[type[models.Model], int], users: list[str], seconds: float
    ) -> None:
        width = max(len(model._meta.verbose_name_plural) for model in SHOP_MODELS)
        self.stdout.write("Seeded the demo shop:")
        for model in reversed(SHOP_MODELS):
            total = model._default_manager.count()
            name = str(model._meta.verbose_name_plural)
            self.stdout.write(
                f"  {name:<{width}}  {total - before[model]:>8} created, {total} in all"
            )
        self.stdout.write(f"  users created: {', '.join(users) or 'none (already there)'}")
        for schedule in ReportSchedule.objects.filter(enabled=True).order_by("name"):
            self.stdout.write(f"  schedule: {schedule.name} ({schedule.cron}, {schedule.timezone})")
        self.stdout.write(f"Demo logins: {DEMO_PASSWORD_NOTE}.")
        self.stdout.write(self.style.SUCCESS(f"Done in {seconds:.1f}s."))


class Seeder:
    def __init__(
        self, rng: random.Random, seed: int, log: Callable[[str], Any] | None = None
    ) -> None:
        self.log = log
        self.last_step: tuple[str, float] | None = None
        self.rng = rng
        self.seed = seed
        self.today = timezone.localdate()
        midnight = dt.datetime.combine(self.today, dt.time.min)
        self.anchor = timezone.make_aware(midnight)
        self.pools = self.make_pools()

    def make_pools(self) -> Pools:
        fakes = {locale: faker.Faker(locale) for locale in LOCALES}
        for index, fake in enumerate(fakes.values()):
            fake.seed_instance(self.seed + index)
        addresses = []
        first_names: list[str] = []
        last_names: list[str] = []
        for locale, fake in fakes.items():
            first_names += [fake.first_name() for _ in range(30)]
            last_names += [fake.last_name() for _ in range(30)]
            country = LOCALES[locale]
            addresses += [
                (country, fake.city(), fake.postcode(), fake.street_address()) for _ in range(40)
            ]
        english = fakes["en_GB"]
        return Pools(
            first_names=first_names,
            last_names=last_names,
            addresses=addresses,
            companies=[fakes[loc].company() for loc in LOCALES for _ in range(10)],
            sentences=[english.sentence(nb_words=12) for _ in range(100)],
        )

    def moments(self, count: int, days: int = 730) -> list[dt.datetime]:
        """``count`` ascending aware datetimes within the last ``days`` days."""
        span = days * 86400
        offsets = sorted((self.rng.randrange(span) for _ in range(count)), reverse=True)
        anchor = self.anchor
        return [anchor - dt.timedelta(seconds=offset) for offset in offsets]

    def until_now(self, moment: dt.datetime) -> dt.datetime | None:
        """``moment``, or ``None`` if it has not happened yet."""
        return moment if moment <= self.anchor else None

    def awkward(self, share: float = 0.02) -> bool:
        return self.rng.random() < share

    def step(self, name: str) -> None:
        now = time.perf_counter()
        if self.log and self.last_step:
            self.log(f"  {self.last_step[0]}: {now - self.last_step[1]:.2f}s")
        self.last_step = (name, now)

    def run(self, *, orders: int, customers: int, products: int) -> None:
        self.step("small tables")
        presets, templates = self.seed_small_tables()
        self.step("categories, products, inventory")
        categories = self.seed_categories()
        product_rows = self.seed_products(products, categories)
        self.seed_inventory(product_rows)
        self.step("customers")
        customer_rows = self.seed_customers(customers)
        self.step("orders, transactions")
        self.seed_orders(orders, customer_rows, product_rows)
        self.step("ratings")
        self.seed_ratings(orders // 5, customer_rows, product_rows)
        self.step("inquiries")
        self.seed_inquiries(max(5, orders // 20), customer_rows)
        self.step("newsletter")
        self.seed_newsletter(customer_rows)
        self.step("vouchers")
        self.seed_vouchers(max(5, orders // 10), customer_rows, presets, templates)
        self.step("seo views")
        self.seed_seo_views(max(60, orders // 10), categories, product_rows)
        self.step("")

    def seed_small_tables(self) -> tuple[list[VoucherPreset], list[VoucherTemplate]]:
        feed_templates = [
            factories.DataFeedTemplateFactory(name=f"{fmt.upper()} standard", feed_format=fmt)
            for fmt in DataFeedTemplate.FeedFormat.values
        ]
        feed_templates += factories.DataFeedTemplateFactory.create_batch(2)
        for channel in DataFeed.Channel.values:
            factories.DataFeedFactory(
                channel=channel, template=self.rng.choice(feed_templates), name=f"{channel} feed"
            )
        factories.DataFeedFactory.create_batch(3, template=self.rng.choice(feed_templates))
        presets = [
            factories.VoucherPresetFactory(
                name=name,
                value=Decimal(value),
                is_percentage=percent,
                validity_days=days,
                min_order_value=Decimal(minimum),
            )
            for name, value, percent, days, minimum in PRESETS
        ]
        templates = [
            factories.VoucherTemplateFactory(language=language, name=f"Voucher mail ({language})")
            for language in ("en", "de", "fr", "de-CH")
        ]
        templates += factories.VoucherTemplateFactory.create_batch(2)
        return presets, templates

    def seed_categories(self) -> list[Category]:
        suffix = f"-{next_key(Category) + 1}" if Category._default_manager.exists() else ""
        created = self.moments(1)[0]

        def category(name: str, order: int, parent: Category | None = None) -> Category:
            return Category(
                name=name,
                slug=(slugify(name) or ascii_slug(name)) + suffix,
                parent=parent,
                description="" if parent else f"Everything in {name}.",
                is_active=name != "=Last chance",
                sort_order=order,
                created_at=created,
            )

        roots = insert(Category, (category(name, i) for i, name in enumerate(CATEGORY_TREE)))
        return insert(
            Category,
            (
                category(child, i, root)
                for root in roots
                for i, child in enumerate(CATEGORY_TREE[root.name])
            ),
        )

    def seed_products(self, count: int, categories: list[Category]) -> list[Product]:
        rng, base = self.rng, next_key(Product)
        sentences = self.pools.sentences
        created = self.moments(count)

        def product(i: int) -> Product:
            price = rng.choice((99, 199, 499, 999, 1999, 2999, 4999, 9999, 24999)) + rng.choice(
                (0, 0, 0, 100, 500)
            )
            if self.awkward():
                name = rng.choice(AWKWARD_PRODUCT_NAMES)
            else:
                name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.randint(1, 99)}"
            return Product(
                sku=f"SKU-{base + i:06d}",
                name=name,
                category=rng.choice(categories),
                description=" ".join(rng.sample(sentences, 3)),
                price=cents(price),
                cost=cents(price * rng.randint(35, 75) // 100),
                stock=rng.randint(-3, 400),
                is_active=rng.random() < 0.92,
                weight_grams=rng.randint(20, 15000),
                ean="" if rng.random() < 0.1 else f"40{rng.randrange(10**11):011d}",
                created_at=created[i - 1],
            )

        return insert(Product, (product(i) for i in range(1, count + 1)))

    def seed_inventory(self, products: list[Product]) -> None:
        rng = self.rng
        insert(
            InventoryItem,
            (
                InventoryItem(
                    product=product,
                    warehouse=warehouse,
                    quantity=rng.randint(-2, 500),
                    reserved=rng.randint(0, 15),
                    reorder_level=rng.choice((5, 10, 20, 50)),
                )
                for product in products
                for warehouse in InventoryItem.Warehouse.values
            ),
        )

    def seed_customers(self, count: int) -> list[CustomerAccount]:
        rng, pools, base = self.rng, self.pools, next_key(CustomerAccount)
        countries = list(LOCALES.values())
        by_country: dict[str, list[tuple[str, str, str, str]]] = {}
        for address in pools.addresses:
            by_country.setdefault(address[0], []).append(address)
        slugs = {name: ascii_slug(name) for name in pools.first_names + pools.last_names}
        created = self.moments(count, days=1095)

        def customer(i: int) -> CustomerAccount:
            first, last = rng.choice(pools.first_names), rng.choice(pools.last_names)
            email = f"{slugs[first]}.{slugs[last]}.{base + i}@{rng.choice(DOMAINS)}"
            if self.awkward():
                first, last = (
                    rng.choice(factories.AWKWARD_NAMES),
                    rng.choice(factories.AWKWARD_NAMES),
                )
            country = rng.choices(countries, COUNTRY_WEIGHTS)[0]
            _, city, postal_code, street = rng.choice(by_country[country])
            joined = created[i - 1]
            return CustomerAccount(
                email=email,
                first_name=first,
                last_name=last,
                phone=rng.choice(("+49 ", "0", "+41 ", "+44 ")) + str(rng.randrange(10**9, 10**10)),
                company=rng.choice(pools.companies) if rng.random() < 0.15 else "",
                birth_date=None
                if rng.random() < 0.4
                else self.today - dt.timedelta(days=rng.randint(18 * 365, 85 * 365)),
                country=country,
                city=city,
                postal_code=postal_code,
                street=street,
                is_active=rng.random() < 0.97,
                credit_balance=cents(rng.choice((0, 0, 0, 0, 10, 500, 1250, 2500))),
                created_at=joined,
                last_login_at=None
                if rng.random() < 0.2
                else joined
                + dt.timedelta(seconds=rng.randrange(max(1, self.seconds_since(joined)))),
            )

        rows = insert(CustomerAccount, (customer(i) for i in range(1, count + 1)))
        rows[0].credit_balance = Decimal("1234567.89")
        rows[-1].credit_balance = Decimal("0.10")
        CustomerAccount._default_manager.bulk_update([rows[0], rows[-1]], ["credit_balance"])
        return rows

    def seconds_since(self, moment: dt.datetime) -> int:
        return int((self.anchor - moment).total_seconds())

    def seed_addresses(
        self, customers: list[CustomerAccount]
    ) -> tuple[list[int], dict[str, list[int]]]:
        """One address per customer (theirs, billed and shipped to), and per country a
        hundredth as many others orders are sent to (gifts, a work address): their keys."""
        rng, pools = self.rng, self.pools
        homes = insert(
            Address,
            (
                Address(
                    name=f"{c.first_name} {c.last_name}",
                    company=c.company,
                    street=c.street,
                    postal_code=c.postal_code,
                    city=c.city,
                    country=c.country,
                )
                for c in customers
            ),
        )
        by_country: dict[str, list[tuple[str, str, str, str]]] = {}
        for address in pools.addresses:
            by_country.setdefault(address[0], []).append(address)
        per_country = max(1, len(customers) // 100)
        others = insert(
            Address,
            (
                Address(
                    name=f"{rng.choice(pools.first_names)} {rng.choice(pools.last_names)}",
                    company=rng.choice(pools.companies) if rng.random() < 0.3 else "",
                    street=street,
                    postal_code=postal_code,
                    city=city,
                    country=country,
                )
                for country in LOCALES.values()
                for country, city, postal_code, street in (
                    rng.choice(by_country[country]) for _ in range(per_country)
                )
            ),
        )
        elsewhere: dict[str, list[int]] = {}
        for address in others:
            elsewhere.setdefault(address.country, []).append(address.pk)
        return [a.pk for a in homes], elsewhere

    def seed_orders(
        self, count: int, customers: list[CustomerAccount], products: list[Product]
    ) -> None:
        rng = self.rng
        base, txn_base = next_key(Order), next_key(Transaction)
        homes, elsewhere = self.seed_addresses(customers)
        buyers = [
            (customer.pk, customer.country, home)
            for customer, home in zip(customers, homes, strict=True)
        ]
        # What a line sells: the product's key, SKU, title, net price in cents and tax rate
        # (reduced for books and media).
        reduced = {"Books & Media"}
        goods = [
            (
                product.pk,
                product.sku,
                product.name,
                int(product.price * 100),
                7 if product.category.parent and product.category.parent.name in reduced else 19,
            )
            for product in products
        ]
        statuses = weighted(ORDER_STATUSES)
        currencies = weighted(CURRENCIES)
        methods = weighted((method, weight) for method, _, weight in PAYMENT)
        line_counts = weighted(((1, 25), (2, 25), (3, 17), (4, 12), (5, 9), (6, 6), (7, 3), (8, 3)))
        quantities = weighted(((1, 80), (2, 15), (3, 5)))
        provider_of = {method: provider for method, provider, _ in PAYMENT}
        charge_status = {"pending": "pending", "cancelled": "failed"}
        unpaid = {"pending", "cancelled"}
        sent = {"shipped", "delivered", "refunded"}
        created = self.moments(count)
        minute = dt.timedelta(minutes=1)
        week = dt.timedelta(days=7)
        anchor = self.anchor
        choice, randint, random_ = rng.choice, rng.randint, rng.random
        txn_number = txn_base
        for start in range(0, count, BATCH):
            orders: list[Order] = []
            #: Per order: (product key, SKU, title, quantity, unit price in cents, tax rate).
            sold: list[list[tuple[int | None, str, str, int, int, int]]] = []
            for i in range(start, min(start + BATCH, count)):
                customer_id, country, home = choice(buyers)
                status = choice(statuses)
                roll = random_()
                if roll < 0.03:  # a gift card: nothing shipped, no VAT
                    value = choice(GIFT_CARDS)
                    lines = [
                        (None, f"GIFT-{value // 100}", f"Gift card {value // 100} €", 1, value, 0)
                    ]
                    ship_to = None
                else:
                    lines = [
                        (pk, sku, title, choice(quantities), price, rate)
                        for pk, sku, title, price, rate in rng.sample(
                            goods, min(choice(line_counts), len(goods))
                        )
                    ]
                    ship_to = choice(elsewhere[country]) if roll > 0.9 else home
                if random_() < 0.001:  # a price at the extremes, untaxed
                    pk, sku, title, _, _, _ = lines[0]
                    lines = [(pk, sku, title, 1, choice((10, 123456789)), 0)]
                subtotal = sum(quantity * price for _, _, _, quantity, price, _ in lines)
                tax = sum(
                    quantity * price * rate // 100 for _, _, _, quantity, price, rate in lines
                )
                shipping = 0 if subtotal >= 5000 or ship_to is None else 495
                placed = created[i]
                paid = None if status in unpaid else placed + minute * randint(1, 90)
                shipped = paid + minute * randint(120, 4320) if paid and status in sent else None
                if shipped and shipped + week > anchor:  # not yet shipped, or too recent to refund
                    shipped, status = (None, "paid") if shipped > anchor else (shipped, "shipped")
                sold.append(lines)
                orders.append(
                    Order(
                        number=f"SO-{base + i + 1:08d}",
                        customer_id=customer_id,
                        status=status,
                        currency=choice(currencies),
                        subtotal=cents(subtotal),
                        shipping=cents(shipping),
                        tax=cents(tax),
                        total=cents(subtotal + shipping + tax),
                        item_count=sum(line[3] for line in lines),
                        payment_method=choice(methods),
                        shipping_country=country,
                        billing_address_id=home,
                        shipping_address_id=ship_to,
                        note=choice(ORDER_NOTES) if random_() < 0.05 else "",
                        created_at=placed,
                        paid_at=paid,
                        shipped_at=shipped,
                    )
                )
            Order._default_manager.bulk_create(orders, batch_size=BATCH)
            OrderLine._default_manager.bulk_create(
                (
                    OrderLine(
                        order_id=order.pk,
                        product_id=pk,
                        sku=sku,
                        title=title,
                        quantity=quantity,
                        unit_price=cents(price),
                        tax_rate=Decimal(rate).quantize(CENT),
                        line_total=cents(quantity * price),
                    )
                    for order, lines in zip(orders, sold, strict=True)
                    for pk, sku, title, quantity, price, rate in lines
                ),
                batch_size=BATCH,
            )
            transactions = []
            for order in orders:
                txn_number += 1
                transactions.append(
                    Transaction(
                        order_id=order.pk,
                        reference=f"ch_{txn_number:010d}",
                        kind="charge",
                        provider=provider_of[order.payment_method],
                        amount=order.total,
                        currency=order.currency,
                        status=charge_status.get(order.status, "succeeded"),
                        created_at=order.paid_at or order.created_at + minute,
                    )
                )
                if order.status == "refunded":
                    txn_number += 1
                    transactions.append(
                        Transaction(
                            order_id=order.pk,
                            reference=f"re_{txn_number:010d}",
                            kind="refund",
                            provider=provider_of[order.payment_method],
                            amount=order.total,
                            currency=order.currency,
                            status="succeeded",
                            created_at=(order.shipped_at or order.created_at) + week,
                        )
                    )
            Transaction._default_manager.bulk_create(transactions, batch_size=BATCH)

    def seed_ratings(
        self, count: int, customers: list[CustomerAccount], products: list[Product]
    ) -> None:
        rng = self.rng
        created = self.moments(count)
        insert(
            ProductRating,
            (
                ProductRating(
                    product=rng.choice(products),
                    customer=rng.choice(customers),
                    rating=rng.choices((1, 2, 3, 4, 5), (4, 4, 10, 30, 52))[0],
                    title=rng.choice(RATING_TITLES),
                    comment=rng.choice(RATING_COMMENTS),
                    is_approved=rng.random() < 0.85,
                    created_at=moment,
                )
                for moment in created
            ),
        )

    def seed_inquiries(self, count: int, customers: list[CustomerAccount]) -> None:
        rng, pools = self.rng, self.pools
        statuses = Inquiry.Status.values
        # Inquiries are keyed by UUIDs: drawn from a generator of their own (the other tables'
        # rows stay what they were), seeded with the rows already there (seeding again adds
        # new keys).
        keys = random.Random(f"inquiry keys {self.seed} {Inquiry._default_manager.count()}")

        def inquiry(moment: dt.datetime) -> Inquiry:
            customer = rng.choice(customers) if rng.random() < 0.8 else None
            first = customer.first_name if customer else rng.choice(pools.first_names)
            email = (
                customer.email
                if customer
                else f"{ascii_slug(first)}{rng.randrange(1000)}@{rng.choice(DOMAINS)}"
            )
            status = rng.choices(statuses, (20, 50, 30))[0]
            answered = self.until_now(moment + dt.timedelta(minutes=rng.randint(5, 2880)))
            if answered is None:
                status = "open"
            return Inquiry(
                id=uuid.UUID(int=keys.getrandbits(128), version=4),
                customer=customer,
                email=email,
                subject=rng.choice(INQUIRY_SUBJECTS),
                message=f"Hello,\n\n{rng.choice(INQUIRY_BODIES)}\n\nRegards,\n{first}",
                status=status,
                created_at=moment,
                answered_at=None if status == "open" else answered,
            )

        insert(Inquiry, (inquiry(moment) for moment in self.moments(count)))

    def seed_newsletter(self, customers: list[CustomerAccount]) -> None:
        rng, pools = self.rng, self.pools
        linked = rng.sample(customers, len(customers) // 2)
        guests = len(customers) // 10
        sources = NewsletterSubscriber.Source.values

        def subscriber(customer: CustomerAccount | None, k: int) -> NewsletterSubscriber:
            if customer:
                email, since = customer.email, customer.created_at
            else:
                first, last = rng.choice(pools.first_names), rng.choice(pools.last_names)
                email = f"{ascii_slug(first)}.{ascii_slug(last)}{k}@{rng.choice(DOMAINS)}"
                since = self.anchor - dt.timedelta(days=1095)
            subscribed = since + dt.timedelta(
                seconds=rng.randrange(max(1, self.seconds_since(since)))
            )
            return NewsletterSubscriber(
                email=email,
                customer=customer,
                confirmed=rng.random() < 0.8,
                source=rng.choices(sources, (45, 30, 20, 5))[0],
                subscribed_at=subscribed,
                unsubscribed_at=self.until_now(subscribed + dt.timedelta(days=rng.randint(1, 200)))
                if rng.random() < 0.1
                else None,
            )

        people: list[CustomerAccount | None] = [*linked, *([None] * guests)]
        insert(NewsletterSubscriber, (subscriber(c, k) for k, c in enumerate(people)))

    def seed_vouchers(
        self,
        count: int,
        customers: list[CustomerAccount],
        presets: Sequence[VoucherPreset],
        templates: Sequence[VoucherTemplate],
    ) -> None:
        rng, base = self.rng, next_key(Voucher)
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

        def voucher(i: int, moment: dt.datetime) -> Voucher:
            preset = rng.choice(presets) if rng.random() < 0.9 else None
            valid_from = timezone.localdate(moment)
            days = preset.validity_days if preset else 365
            redeemed = (
                self.until_now(moment + dt.timedelta(days=rng.randint(0, days)))
                if rng.random() < 0.3
                else None
            )
            return Voucher(
                code="".join(rng.choices(alphabet, k=4)) + f"-{base + i:06X}",
                preset=preset,
                template=rng.choice(templates) if rng.random() < 0.8 else None,
                customer=rng.choice(customers) if rng.random() < 0.6 else None,
                value=preset.value if preset else cents(rng.choice((500, 1000, 2000))),
                currency=preset.currency if preset else "EUR",
                valid_from=valid_from,
                valid_until=valid_from + dt.timedelta(days=days),
                redeemed_at=redeemed,
                is_active=rng.random() < 0.95,
                created_at=moment,
            )

        moments = self.moments(count, days=365)
        insert(Voucher, (voucher(i, m) for i, m in enumerate(moments, start=1)))

    def seed_seo_views(
        self, count: int, categories: list[Category], products: list[Product]
    ) -> None:
        rng = self.rng
        pages = [
            *SEO_STATIC_PAGES,
            *((f"/c/{category.slug}/", category.name) for category in categories),
            *((f"/p/{product.sku.lower()}/", product.name) for product in products),
        ]
        first_day = SeoView._default_manager.aggregate(m=models.Min("date"))["m"] or self.today

        def view(i: int) -> SeoView:
            url, title = pages[i % len(pages)]
            views = min(int(rng.paretovariate(1.2) * 20), 10**7)
            return SeoView(
                url=url,
                page_title=title,
                date=first_day - dt.timedelta(days=1 + i // len(pages)),
                views=views,
                unique_visitors=rng.randint(views // 2, views) if views else 0,
                bounce_rate=cents(rng.randint(500, 9500)),
                avg_seconds_on_page=rng.randint(3, 600),
            )

        insert(SeoView, (view(i) for i in range(count)))
