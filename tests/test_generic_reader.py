"""The generic reader (``OrmChunkReader``) hands the writers exactly what ``values_list`` gives.

It runs the queryset's compiled SQL on the DB-API cursor and applies Django's converters
itself, column by column (SQLite's datetimes, decimals, booleans, UUIDs and dates through
C-level ``map`` calls). These tests compare its values, value for value and type for type, and
its bytes in every format, with ``values_list`` and the writers' ``encode_rows``, on whichever
database the suite runs (SQLite, PostgreSQL and MariaDB), with NULLs, relations (inner and outer
joins), decimals, dates, datetimes with and without time zones, booleans, UUIDs, JSON fields,
annotations and unicode; and the column-wise SQLite converters against Django's own, value
by value, with the stored values SQLite allows that Django would not write.
"""

from __future__ import annotations

import datetime as dt
import decimal
import gc
import json
import math
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import (
    DecimalField,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    QuerySet,
    TimeField,
    Value,
)
from django.db.models.functions import Cast, Lower
from django.db.utils import ConnectionHandler

from django_report_export.formats import CSVWriter, JSONWriter, XMLWriter, get_writer_class
from django_report_export.formats.base import ChunkRows, FormatWriter, Row
from django_report_export.models import ReportExport
from django_report_export.readers import OrmChunkReader
from django_report_export.readers.converters import _convert, _sqlite_decimal_converter
from testproject.shop.models import CustomerAccount, Inquiry, Order

pytestmark = pytest.mark.django_db(transaction=True)

SQLITE = connection.vendor == "sqlite"
UTC = dt.UTC
BERLIN = dt.timezone(dt.timedelta(hours=2))
TEXTS = ["", "=1+2", 'say "hi", then go', "line\r\nbreak", "Zoë 日本 🎉 \U0001d518", "null", "]]>"]


class Capture(FormatWriter):
    """A writer that keeps what the reader hands it, in every shape a writer may read."""

    name = "capture"

    def __init__(self, service: str, columns: Sequence[str]) -> None:
        super().__init__(service, columns)
        self.rows: list[Row] = []
        self.columns_seen: list[list[Any]] = [[] for _ in self.columns]
        self.records: list[dict[str, Any]] = []

    def encode_rows(self, rows: Sequence[Row], *, first: bool) -> bytes:
        raise AssertionError("The reader hands whole chunks to encode_chunk.")

    def encode_chunk(self, chunk: ChunkRows, *, first: bool) -> bytes:
        self.rows.extend(chunk.rows())
        for seen, column in zip(self.columns_seen, chunk.columns(), strict=True):
            seen.extend(column)
        self.records.extend(chunk.records(self.columns))
        return b""


def read_all(reader: OrmChunkReader, chunk_size: int) -> tuple[bytes, int, list[Any]]:
    """The file's bytes through ``reader``, its row count and each chunk's last key."""
    writer = reader.writer
    parts = [writer.header()]
    processed, last_key, keys = 0, None, []
    while True:
        chunk = reader.read(last_key, chunk_size, first=processed == 0)
        if chunk.count:
            parts.append(chunk.data)
            processed += chunk.count
            last_key = chunk.last_key
            keys.append(last_key)
        if chunk.count < chunk_size:
            break
    parts.append(writer.footer(empty=processed == 0))
    return b"".join(parts), processed, keys


def typed(value: Any) -> Any:
    """A value with everything that can differ between two equal values: its type, its text
    (``Decimal("1.0")`` and ``Decimal("1.00")`` are equal), a datetime's offset and fold."""
    if isinstance(value, dt.datetime):
        return (type(value), value.isoformat(), value.tzinfo, value.fold)
    if isinstance(value, list | tuple):
        return (type(value), [typed(item) for item in value])
    if isinstance(value, dict):
        return (type(value), [(key, typed(item)) for key, item in value.items()])
    return (type(value), repr(value))


def typed_rows(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [[typed(value) for value in row] for row in rows]


def assert_reads_like_values_list(
    queryset: QuerySet[Any], fields: list[str], chunk_size: int = 7
) -> None:
    expected = list(queryset.values_list(*fields))
    assert expected, "the case has rows"
    writer = Capture("case", fields)
    _, count, keys = read_all(OrmChunkReader(queryset, fields, writer), chunk_size)
    assert count == len(expected)
    assert typed_rows(writer.rows) == typed_rows(expected)
    columns = [list(column) for column in zip(*expected, strict=True)]
    assert [[typed(v) for v in column] for column in writer.columns_seen] == [
        [typed(v) for v in column] for column in columns
    ]
    records = [dict(zip(fields, row, strict=True)) for row in expected]
    assert [typed(record) for record in writer.records] == [typed(record) for record in records]
    all_keys = list(queryset.values_list("pk", flat=True))
    assert keys == all_keys[chunk_size - 1 :: chunk_size] + (
        [all_keys[-1]] if len(all_keys) % chunk_size else []
    )
    for key in keys:
        assert type(key) is type(all_keys[0])
    for export_format in ("csv", "json", "xml"):
        assert_same_bytes(queryset, fields, export_format, expected)


def assert_same_bytes(
    queryset: QuerySet[Any], fields: list[str], export_format: str, rows: list[Any]
) -> None:
    """The reader's file is the writer's ``encode_rows`` of ``values_list``, for any chunking."""
    writer = get_writer_class(export_format)("case", fields)
    expected = writer.header() + writer.encode_rows(rows, first=True) + writer.footer(empty=False)
    for chunk_size in (1, 3, 5000):
        reader = OrmChunkReader(queryset, fields, get_writer_class(export_format)("case", fields))
        data, _, _ = read_all(reader, chunk_size)
        assert data == expected, (export_format, chunk_size)


@pytest.fixture
def shop() -> None:
    """A small seeded shop with awkward values: NULLs in every nullable column and through
    outer joins, unicode and formula-like texts, decimals at their limits, datetimes with
    and without microseconds."""
    call_command("seed_shop", orders=60, customers=12, products=10, seed=3, verbosity=0)
    moments = [
        dt.datetime(2024, 5, 1, 10, 0, 0, 0, tzinfo=UTC),
        dt.datetime(2024, 5, 1, 10, 0, 0, 1, tzinfo=UTC),
        dt.datetime(1, 1, 1, 0, 0, 0, tzinfo=UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(2024, 3, 31, 1, 30, tzinfo=BERLIN),
    ]
    amounts = [Decimal("0.00"), Decimal("-0.01"), Decimal("9999999999.99"), Decimal("10.10")]
    with transaction.atomic():
        for index, order in enumerate(Order.objects.order_by("pk")):
            order.note = TEXTS[index % len(TEXTS)]
            order.paid_at = moments[index % len(moments)] if index % 3 else None
            order.subtotal = amounts[index % len(amounts)]
            order.save()
        for index, customer in enumerate(CustomerAccount.objects.order_by("pk")):
            customer.first_name = TEXTS[(index * 3) % len(TEXTS)] or "x"
            customer.birth_date = [None, dt.date(1, 1, 1), dt.date(9999, 12, 31)][index % 3]
            customer.is_active = bool(index % 2)
            customer.last_login_at = moments[index % len(moments)] if index % 2 else None
            customer.save()
        for index, inquiry in enumerate(Inquiry.objects.order_by("pk")):
            if index % 2:
                inquiry.customer = None
                inquiry.save()


ORDER_FIELDS = [
    "id",
    "number",
    "created_at",
    "status",
    "customer__email",
    "customer__first_name",
    "customer__birth_date",
    "customer__is_active",
    "customer__credit_balance",
    "subtotal",
    "total",
    "item_count",
    "paid_at",
    "note",
]


def test_orders_through_a_join(shop: None) -> None:
    assert_reads_like_values_list(Order.objects.order_by("pk"), ORDER_FIELDS)


def test_key_not_exported(shop: None) -> None:
    """The key is read beside the fields, then dropped, and still gives the checkpoints."""
    fields = [name for name in ORDER_FIELDS if name != "id"]
    assert_reads_like_values_list(Order.objects.order_by("pk"), fields)


def test_nulls_through_an_outer_join(shop: None) -> None:
    fields = ["subject", "customer__email", "customer__last_login_at", "customer__is_active"]
    queryset = Inquiry.objects.order_by("pk")
    assert queryset.filter(customer=None).exists()
    assert_reads_like_values_list(queryset, fields)


def test_uuid_key_and_json_fields(shop: None) -> None:
    """A UUID primary key (converted on SQLite, which stores it as text) and JSON values."""
    for index in range(9):
        ReportExport.objects.create(
            service="orderRow",
            slot=f"slot-{index}",
            format="csv",
            fields=["id", TEXTS[index % len(TEXTS)]],
            filters={"status": "paid", "n": index, "nested": {"z": [1, 2.5, None, True]}},
            keys=None if index % 2 else [index, str(index)],
            checkpoint={"last_key": index} if index % 3 else {},
            error=TEXTS[index % len(TEXTS)],
            started_at=dt.datetime(2024, 1, 1, tzinfo=UTC) if index % 2 else None,
        )
    queryset = ReportExport.objects.order_by("pk")
    fields = ["id", "service", "fields", "filters", "keys", "checkpoint", "started_at", "error"]
    assert_reads_like_values_list(queryset, fields, chunk_size=2)
    assert_reads_like_values_list(queryset, fields[1:], chunk_size=4)


def test_annotations_and_expressions(shop: None) -> None:
    """Columns that are expressions rather than table columns: SQLite's decimal converter
    without quantizing, times, durations, floats, constants."""
    queryset = Order.objects.order_by("pk").annotate(
        double=ExpressionWrapper(
            F("total") * 2, output_field=DecimalField(max_digits=12, decimal_places=2)
        ),
        ratio=Cast(F("item_count"), FloatField()) / 3,
        moment=Cast("created_at", TimeField()),
        waited=ExpressionWrapper(F("paid_at") - F("created_at"), output_field=DurationField()),
        lower_status=Lower("status"),
        constant=Value(Decimal("1.50"), output_field=DecimalField(max_digits=5, decimal_places=2)),
    )
    fields = ["id", "double", "ratio", "moment", "waited", "lower_status", "constant"]
    rows = list(queryset.values_list(*fields))
    assert any(row[4] is None for row in rows)
    assert any(row[4] is not None for row in rows)
    assert_reads_like_values_list(queryset, fields)


def test_filtered_empty_and_resumed(shop: None) -> None:
    queryset = Order.objects.order_by("pk")
    assert_reads_like_values_list(queryset.filter(status="paid"), ORDER_FIELDS, chunk_size=2)
    writer = Capture("case", ORDER_FIELDS)
    _, count, _ = read_all(OrmChunkReader(queryset.none(), ORDER_FIELDS, writer), 5)
    assert count == 0
    # A new reader continues after any key, as a resumed export does.
    keys = list(queryset.values_list("pk", flat=True))
    middle = keys[len(keys) // 2]
    writer = Capture("case", ORDER_FIELDS)
    read_all(OrmChunkReader(queryset.filter(pk__gt=middle), ORDER_FIELDS, writer), 4)
    assert typed_rows(writer.rows) == typed_rows(
        list(queryset.filter(pk__gt=middle).values_list(*ORDER_FIELDS))
    )


def test_inside_a_transaction(shop: None) -> None:
    """Inside ``atomic`` the reader sees the transaction's own rows (no second connection)."""
    with transaction.atomic():
        Order.objects.filter(pk=Order.objects.order_by("pk").first().pk).update(note="mine")
        assert_reads_like_values_list(Order.objects.order_by("pk"), ORDER_FIELDS)
        reader = OrmChunkReader(Order.objects.order_by("pk"), ["note"], Capture("c", ["note"]))
        read_all(reader, 3)
        assert "mine" in [row[0] for row in reader.writer.rows]  # type: ignore[attr-defined]


@pytest.mark.skipif(not SQLITE, reason="values only SQLite stores as they are")
def test_sqlite_stored_values_django_would_not_write(shop: None) -> None:
    """Raw values SQLite keeps as given: integers and awkward floats in decimal columns,
    datetimes stored with an offset, booleans other than 0 and 1, texts in a date column."""
    keys = list(Order.objects.order_by("pk").values_list("pk", flat=True))
    customers = list(CustomerAccount.objects.order_by("pk").values_list("pk", flat=True))
    with connection.cursor() as cursor:
        for key, subtotal in zip(keys, [7, 2.675, 1e-7, -0.005, 123456789.125, 0], strict=False):
            cursor.execute("UPDATE shop_order SET subtotal = %s WHERE id = %s", [subtotal, key])
        cursor.execute(
            "UPDATE shop_order SET paid_at = '2024-05-01 10:00:00+02:00' WHERE id = %s", [keys[1]]
        )
        cursor.execute(
            "UPDATE shop_order SET paid_at = '2024-05-01T10:00:00.5' WHERE id = %s", [keys[2]]
        )
        cursor.execute(
            "UPDATE shop_customeraccount SET is_active = 2 WHERE id = %s", [customers[0]]
        )
    rows = list(Order.objects.order_by("pk").values_list("subtotal", "paid_at"))
    assert rows[0][0] == Decimal("7.00")
    assert rows[1][1].utcoffset() == dt.timedelta(hours=2)
    assert_reads_like_values_list(Order.objects.order_by("pk"), ORDER_FIELDS)
    assert_reads_like_values_list(Order.objects.order_by("pk"), ORDER_FIELDS, chunk_size=1)


@pytest.mark.skipif(
    connection.vendor == "mysql", reason="MariaDB refuses bytes that are not UTF-8 in a text column"
)
def test_bytes_in_a_text_column(shop: None) -> None:
    """SQLite keeps a blob in any column: every writer writes it as from the rows."""
    key = Order.objects.order_by("pk").values_list("pk", flat=True)[1]
    with connection.cursor() as cursor:
        cursor.execute("UPDATE shop_order SET note = %s WHERE id = %s", [b"\x00\xff", key])
    assert_reads_like_values_list(Order.objects.order_by("pk"), ORDER_FIELDS)
    for writer_class in (CSVWriter, JSONWriter, XMLWriter):
        queryset = Order.objects.order_by("pk")
        rows = list(queryset.values_list(*ORDER_FIELDS))
        writer = writer_class("o", ORDER_FIELDS)
        expected = writer.header() + writer.encode_rows(rows, first=True)
        expected += writer.footer(empty=False)
        data, _, _ = read_all(OrmChunkReader(queryset, ORDER_FIELDS, writer), 4)
        assert data == expected


@pytest.mark.parametrize("enabled", [True, False])
def test_garbage_collector_left_as_found(shop: None, enabled: bool) -> None:
    """The collector is paused while a chunk is read, and left as it was found."""
    fields = ["id", "number"]
    reader = OrmChunkReader(Order.objects.order_by("pk"), fields, JSONWriter("o", fields))
    was_enabled = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        read_all(reader, 3)
        assert gc.isenabled() is enabled
    finally:
        if was_enabled:
            gc.enable()


# --- SQLite's converters, column by column, against Django's value by value ------------------


def sqlite_connection(time_zone: str | None = None) -> Any:
    """A SQLite connection (never opened), whatever database the suite runs on."""
    options: dict[str, Any] = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    if time_zone is not None:
        options["TIME_ZONE"] = time_zone
    return ConnectionHandler({"default": options})["default"]


def assert_column_like_django(
    functions: list[Any], expression: Any, values: list[Any], sqlite: Any
) -> None:
    """Django's values, or Django's error, come out of ``_convert`` too."""
    expected = values
    try:
        for function in functions:
            expected = [function(value, expression, sqlite) for value in expected]
    except Exception as error:
        with pytest.raises(type(error)):
            _convert(list(values), functions, expression, sqlite)
        return
    assert [typed(v) for v in _convert(list(values), functions, expression, sqlite)] == [
        typed(v) for v in expected
    ]


def column_of(field_name: str) -> Any:
    return Order._meta.get_field(field_name).get_col(Order._meta.db_table)


NAIVE = [
    dt.datetime(2024, 5, 1, 10, 0),
    dt.datetime(2024, 10, 27, 2, 30, fold=1),
    dt.datetime(1, 1, 1),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
]


@pytest.mark.parametrize("time_zone", [None, "Europe/Berlin"])
@pytest.mark.parametrize(
    "values",
    [
        NAIVE,
        [None, *NAIVE, None],
        [None, None],
        [],
        [NAIVE[0], dt.datetime(2024, 5, 1, 10, 0, tzinfo=BERLIN)],
        ["2024-05-01 10:00:00", None],
    ],
)
def test_sqlite_datetime_column(values: list[Any], time_zone: str | None, settings: Any) -> None:
    sqlite = sqlite_connection(time_zone)
    column = column_of("created_at")
    functions = sqlite.ops.get_db_converters(column)
    assert_column_like_django(functions, column, values, sqlite)
    settings.USE_TZ = False
    assert_column_like_django(functions, column, values, sqlite)


@pytest.mark.parametrize(
    "values",
    [
        [80.96, 7, 0, -0.01, 2.675, 1e-7, -0.005, 0.125, 9999999999.99, 123456789.125],
        [None, 1.005, None, 3],
        [None],
        [1.0, 2.0],
        [0.1 + 0.2, 1 / 3],
        [2.5, 2**52 + 0.5],
        [1.5, math.nan],
        [2.675, 7, 7.0, 2.675, None, 80.96, 80.96, 7, 1e-7, 1e-7, 2.675],
        [0.0, -0.0, 0, -0.0, 0.0, 0.0, 1.5],
        [math.nan, math.nan, math.nan, 1.0],
    ],
)
def test_sqlite_decimal_column(values: list[Any]) -> None:
    sqlite = sqlite_connection()
    column = column_of("subtotal")
    assert_column_like_django(sqlite.ops.get_db_converters(column), column, values, sqlite)
    expression = ExpressionWrapper(
        F("subtotal") * 2, output_field=DecimalField(max_digits=12, decimal_places=2)
    )
    converter = sqlite.ops.get_decimalfield_converter(expression)
    assert_column_like_django([converter], expression, values, sqlite)


def test_sqlite_decimal_column_of_other_types_goes_value_by_value() -> None:
    sqlite = sqlite_connection()
    column = column_of("subtotal")
    functions = sqlite.ops.get_db_converters(column)
    assert_column_like_django(functions, column, [1.5, True], sqlite)
    # A text: Django before 6.1 raises TypeError, 6.1 makes it a Decimal.
    assert_column_like_django(functions, column, ["1.5"], sqlite)


@pytest.mark.parametrize("types", [{float}, {int}, {int, float}])
def test_sqlite_decimal_column_of_numbers_goes_by_column(types: set[type]) -> None:
    """Whatever shape this Django's converter closure has, numbers take the column path."""
    sqlite = sqlite_connection()
    for expression in (column_of("subtotal"), F("subtotal")):
        converter = sqlite.ops.get_decimalfield_converter(expression)
        assert _sqlite_decimal_converter(converter, types) is not None


@pytest.mark.parametrize(
    "values", [[True, False, None], [1, 0, 2, -1, None, 1.0, 0.0, "1", b"1", Decimal("1")]]
)
def test_sqlite_boolean_column(values: list[Any]) -> None:
    sqlite = sqlite_connection()
    column = CustomerAccount._meta.get_field("is_active").get_col("t")
    assert_column_like_django(sqlite.ops.get_db_converters(column), column, values, sqlite)


def test_sqlite_uuid_date_and_time_columns() -> None:
    sqlite = sqlite_connection()
    key = ReportExport._meta.get_field("id").get_col("t")
    texts = [uuid.uuid4().hex, str(uuid.uuid4()), None, "{12345678-1234-5678-1234-567812345678}"]
    assert_column_like_django(sqlite.ops.get_db_converters(key), key, texts, sqlite)
    born = CustomerAccount._meta.get_field("birth_date").get_col("t")
    for values in (
        [dt.date(2024, 2, 29), None],
        [dt.datetime(2024, 2, 29, 1, 2)],
        ["2024-02-29", None],
    ):
        assert_column_like_django(sqlite.ops.get_db_converters(born), born, values, sqlite)
    moment = Cast("created_at", TimeField())
    assert_column_like_django(
        [sqlite.ops.convert_timefield_value], moment, [dt.time(1, 2, 3), "01:02:03", None], sqlite
    )


def test_decimal_arithmetic_context_does_not_matter() -> None:
    """The converters use their own contexts, not the thread's."""
    sqlite = sqlite_connection()
    column = column_of("subtotal")
    with decimal.localcontext() as context:
        context.prec = 3
        context.rounding = decimal.ROUND_DOWN
        assert_column_like_django(
            sqlite.ops.get_db_converters(column), column, [2.675, 1234.565, 0.125], sqlite
        )


@pytest.mark.parametrize("writer_class", [CSVWriter, JSONWriter, XMLWriter])
def test_every_writer_reads_the_chunk_it_is_given(shop: None, writer_class: Any) -> None:
    """The built-in writers are fed whole chunks (``encode_chunk``) and a project's writer
    that knows only ``encode_rows`` gets the same rows."""

    class RowsOnly(writer_class):  # type: ignore[misc, valid-type]
        def encode_chunk(self, chunk: ChunkRows, *, first: bool) -> bytes:
            return FormatWriter.encode_chunk(self, chunk, first=first)

    queryset = Order.objects.order_by("pk")
    for fields in (ORDER_FIELDS, ORDER_FIELDS[1:]):
        chunked, _, _ = read_all(OrmChunkReader(queryset, fields, writer_class("o", fields)), 9)
        rows_only, _, _ = read_all(OrmChunkReader(queryset, fields, RowsOnly("o", fields)), 9)
        assert chunked == rows_only


@pytest.mark.skipif(SQLITE, reason="SQLite reads on no second thread")
def test_the_reading_thread_closes_its_connection(shop: None) -> None:
    """The connection of the thread that reads ahead is closed with the export's last chunk
    (a session left open would, among other things, block dropping the database)."""

    def sessions() -> int:
        with connection.cursor() as cursor:
            if connection.vendor == "mysql":
                cursor.execute(
                    "SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE()"
                )
            else:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                )
            return int(cursor.fetchone()[0])

    before = sessions()
    for _ in range(3):
        writer = Capture("case", ORDER_FIELDS)
        read_all(OrmChunkReader(Order.objects.order_by("pk"), ORDER_FIELDS, writer), 7)
    deadline = time.monotonic() + 5
    while sessions() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sessions() == before


def test_the_values_written_come_back_exactly() -> None:
    """What a user sees, whatever the database: the file holds the decimals, booleans and
    datetimes (microseconds, in UTC) that were saved, not the database's raw forms (MariaDB
    returns booleans as 0/1, SQLite decimals as floats and datetimes as texts)."""
    from testproject.shop.factories import CustomerAccountFactory

    saved = [
        (Decimal("-9999999999.99"), False, dt.datetime(2024, 3, 31, 1, 59, 59, 999999, BERLIN)),
        (Decimal("0.10"), True, dt.datetime(1999, 12, 31, 23, 59, 59, 1, UTC)),
        (Decimal("1234567.89"), True, dt.datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC)),
    ]
    keys = [
        CustomerAccountFactory(
            credit_balance=balance, is_active=active, created_at=moment, last_login_at=None
        ).pk
        for balance, active, moment in saved
    ]
    fields = ["id", "credit_balance", "is_active", "created_at", "last_login_at"]
    expected_rows = [
        (key, balance, active, moment.astimezone(UTC), None)
        for key, (balance, active, moment) in zip(keys, saved, strict=True)
    ]
    queryset = CustomerAccount.objects.filter(pk__in=keys).order_by("pk")
    for writer_class in (CSVWriter, JSONWriter, XMLWriter):
        writer = writer_class("c", fields)
        expected = writer.header() + writer.encode_rows(expected_rows, first=True)
        expected += writer.footer(empty=False)
        data, _, _ = read_all(OrmChunkReader(queryset, fields, writer_class("c", fields)), 2)
        assert data == expected, writer_class.name
    record = json.loads(read_all(OrmChunkReader(queryset, fields, JSONWriter("c", fields)), 2)[0])
    assert [row["credit_balance"] for row in record] == ["-9999999999.99", "0.10", "1234567.89"]
    assert [row["is_active"] for row in record] == [False, True, True]


# --- MySQL's converters, column by column, against Django's value by value -------------------


def mysql_connection(time_zone: str | None = None) -> Any:
    """A MySQL/MariaDB connection (never opened), whatever database the suite runs on."""
    options: dict[str, Any] = {"ENGINE": "django.db.backends.mysql", "NAME": "unused"}
    if time_zone is not None:
        options["TIME_ZONE"] = time_zone
    return ConnectionHandler({"default": options})["default"]


@pytest.mark.parametrize("time_zone", [None, "Europe/Berlin"])
@pytest.mark.parametrize(
    "values",
    [
        NAIVE,
        [None, *NAIVE, None],
        [None, None],
        [],
        [NAIVE[0], dt.datetime(2024, 5, 1, 10, 0, tzinfo=BERLIN)],
    ],
)
def test_mysql_datetime_column(values: list[Any], time_zone: str | None) -> None:
    mysql = mysql_connection(time_zone)
    column = column_of("created_at")
    functions = mysql.ops.get_db_converters(column)
    assert any(getattr(f, "__func__", None) for f in functions), "a converter of MySQL's"
    assert_column_like_django(functions, column, values, mysql)


@pytest.mark.parametrize("values", [[1, 0, None, 1], [1, 0, 2, -1, None, 1.0, "1", Decimal("1")]])
def test_mysql_boolean_column(values: list[Any]) -> None:
    mysql = mysql_connection()
    column = CustomerAccount._meta.get_field("is_active").get_col("t")
    assert_column_like_django(mysql.ops.get_db_converters(column), column, values, mysql)


def test_mysql_uuid_column() -> None:
    mysql = mysql_connection()
    key = ReportExport._meta.get_field("id").get_col("t")
    texts = [uuid.uuid4().hex, None, uuid.uuid4().hex]
    assert_column_like_django(mysql.ops.get_db_converters(key), key, texts, mysql)


# --- MySQL's driver conversions, column by column, against mysqlclient's value by value ------


@pytest.mark.parametrize(
    ("field_type", "texts"),
    [
        (
            "DATETIME",
            [
                "2024-05-01 10:00:00.000000",
                "1999-12-31 23:59:59.999999",
                None,
                "0001-01-01 00:00:00.000001",
            ],
        ),
        ("DATETIME", ["2024-05-01 10:00:00", None, None]),
        ("DATETIME", ["2024-05-01 10:00:00.5", "2024-05-01 10:00:00.123"]),  # DATETIME(1), (3)
        ("DATETIME", ["0000-00-00 00:00:00", "2024-05-01 10:00:00"]),  # the driver's None
        ("TIMESTAMP", ["2024-05-01 10:00:00", "2024-02-30 10:00:00"]),
        ("DATE", ["2024-05-01", None, "0000-00-00", "1999-12-31"]),
        ("DATE", ["2024-05-01", "9999-12-31"]),
        ("NEWDECIMAL", ["12.50", "12.50", "-0.00", "0.10", None, "12.50", "-9999999999.99"]),
        ("NEWDECIMAL", ["0.0000001", "0.00000000", "123", "1.10"]),
        ("DECIMAL", ["1.5", None]),
        ("NEWDECIMAL", [None, None]),
    ],
)
def test_mysql_text_columns_like_the_driver(field_type: str, texts: list[Any]) -> None:
    pytest.importorskip("MySQLdb")
    from MySQLdb.constants import FIELD_TYPE
    from MySQLdb.converters import conversions

    from django_report_export.readers import mysql

    code = getattr(FIELD_TYPE, field_type)
    driver = conversions[code]
    rows = [(index, text) for index, text in enumerate(texts)]
    (parse,) = (mysql._PARSERS[code][1],)
    converted = mysql.convert_columns(rows, {1: parse})[1]
    expected = [None if text is None else driver(text) for text in texts]
    assert converted == expected
    assert list(map(type, converted)) == list(map(type, expected))
    assert list(map(str, converted)) == list(map(str, expected))


# --- MySQL's join order --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT `a` FROM `t`", "SELECT STRAIGHT_JOIN `a` FROM `t`"),
        ("SELECT DISTINCT `a` FROM `t`", "SELECT DISTINCT STRAIGHT_JOIN `a` FROM `t`"),
        ("SELECT STRAIGHT_JOIN `a` FROM `t`", "SELECT STRAIGHT_JOIN `a` FROM `t`"),
        ("(SELECT `a` FROM `t`) UNION (SELECT `b` FROM `u`)", None),
    ],
)
def test_mysql_queries_join_in_the_written_order(sql: str, expected: str | None) -> None:
    pytest.importorskip("MySQLdb")
    from django_report_export.readers.mysql import joined_in_order

    assert joined_in_order(sql) == (sql if expected is None else expected)


@pytest.mark.skipif(connection.vendor != "mysql", reason="MariaDB's query plans")
def test_mysql_chunks_walk_the_exported_models_key(shop: None) -> None:
    """Each chunk of orders with their customers is read from the orders' primary key, the
    customers looked up by theirs: no chunk, the first neither, joins every order into a
    temporary table to sort it (what MariaDB chose for the first chunk of a large table)."""
    queries: list[tuple[str, Any]] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries.append((sql, params))
        return execute(sql, params, many, context)

    queryset = Order.objects.order_by("pk")
    writer = Capture("case", ORDER_FIELDS)
    with connection.execute_wrapper(record):
        read_all(OrmChunkReader(queryset, ORDER_FIELDS, writer), 25)
    assert typed_rows(writer.rows) == typed_rows(list(queryset.values_list(*ORDER_FIELDS)))
    assert queries
    with connection.cursor() as cursor:
        for sql, params in queries:
            cursor.execute(f"EXPLAIN {sql}", params)
            names = [column[0] for column in cursor.description]
            plan = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            assert plan[0]["table"] == Order._meta.db_table, plan
            assert plan[0]["key"] == "PRIMARY", plan
            assert not any("filesort" in (step["Extra"] or "") for step in plan), plan
