"""The ``REPORT_EXPORT`` settings dict, read through one object at use time.

    from django_report_export.conf import export_settings
    export_settings.CHUNK_SIZE  # an int

``ExportSettings`` is the table of settings: one line per key with its default, the rule its
value must follow (which also gives its type) and the id of the system check that reports a
value breaking it. ``checks.py`` runs the same rules. A value is read on first use and kept
until ``settings.REPORT_EXPORT`` changes, so ``override_settings`` reaches every key.
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, NamedTuple, TypeVar, overload

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTING_NAME = "REPORT_EXPORT"

T = TypeVar("T")


class Invalid(NamedTuple):
    """What is wrong with a setting's value, as a system check says it."""

    message: str
    hint: str | None = None


@dataclass(frozen=True)
class Rule(Generic[T]):
    """What a setting's value must be: its type, as the settings reference writes it, and a
    test naming what is wrong with a value (``None``: nothing)."""

    type: str
    problem: Callable[[str, Any], Invalid | None]
    choices: tuple[T, ...] = ()


class Setting(Generic[T]):
    """One key of ``REPORT_EXPORT``. ``check`` is the number of the check that reports a value
    breaking ``rule`` (``None``: any value is taken); ``also`` names other checks of it
    (``"E016"``)."""

    def __init__(
        self, default: T, rule: Rule[T], check: int | None, *, also: tuple[str, ...] = ()
    ) -> None:
        self.default = default
        self.rule = rule
        self.check = check
        self.also = also
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> Setting[T]: ...

    @overload
    def __get__(self, instance: ExportSettings, owner: type) -> T: ...

    def __get__(self, instance: ExportSettings | None, owner: type) -> Setting[T] | T:
        """The value, kept as an instance attribute: later reads (a few per status request)
        are plain attribute reads until ``reload``."""
        if instance is None:
            return self
        value: T = self.read(instance.user_settings)
        invalid = self.problem(value) if self.rule.choices else None
        if invalid is not None:
            raise ImproperlyConfigured(invalid.message)  # its readers know only the choices
        instance.__dict__[self.name] = value
        return value

    def read(self, user_settings: dict[str, Any]) -> Any:
        """The value in ``user_settings``, unchecked: the default when it is not there."""
        return user_settings.get(self.name, self.default)

    def problem(self, value: Any) -> Invalid | None:
        return self.rule.problem(self.name, value)


# --- rules ----------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _must_be(expected: str, test: Callable[[Any], bool]) -> Callable[[str, Any], Invalid | None]:
    def problem(name: str, value: Any) -> Invalid | None:
        return None if test(value) else Invalid(f"{SETTING_NAME}[{name!r}] must be {expected}.")

    return problem


def number(minimum: int, *, above: bool = False) -> Rule[float]:
    """A number (seconds, mostly) at least ``minimum``, or greater than it with ``above``."""
    if above:
        return Rule(
            "float", _must_be(f"a number > {minimum}", lambda v: is_number(v) and v > minimum)
        )
    return Rule(
        "float", _must_be(f"a number >= {minimum}", lambda v: is_number(v) and v >= minimum)
    )


def integer(minimum: int) -> Rule[int]:
    return Rule("int", _must_be(f"an integer >= {minimum}", lambda v: is_int(v) and v >= minimum))


def optional_integer(minimum: int) -> Rule[int | None]:
    return Rule(
        "int | None",
        _must_be(
            f"None or an integer >= {minimum}", lambda v: v is None or (is_int(v) and v >= minimum)
        ),
    )


def job_timeout() -> Rule[int]:
    """RQ's job timeout: whole seconds, or -1 for none."""
    return Rule(
        "int",
        _must_be(
            "an integer >= 1, or -1 (no timeout)", lambda v: is_int(v) and (v >= 1 or v == -1)
        ),
    )


def one_of(*choices: T) -> Rule[T]:
    def problem(name: str, value: Any) -> Invalid | None:
        if value in choices:
            return None
        return Invalid(
            f"settings.{SETTING_NAME}[{name!r}] is {value!r}; expected one of {choices}."
        )

    return Rule(" or ".join(literal(choice) for choice in choices), problem, choices)


def boolean() -> Rule[bool]:
    """``True`` or ``False`` (checked where read too, as a choice is)."""
    return Rule("bool", _must_be("True or False", lambda v: isinstance(v, bool)), (False, True))


def timezone_name() -> Rule[str]:
    """An IANA time zone name this system knows (``zoneinfo``)."""

    def known(value: Any) -> bool:
        try:
            return isinstance(value, str) and bool(value) and bool(zoneinfo.ZoneInfo(value))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return False

    return Rule("str", _must_be('an IANA time zone name, e.g. "Europe/Berlin"', known))


def anything(type_name: str) -> Rule[Any]:
    """No check: the value is used as given."""
    return Rule(type_name, lambda name, value: None)


def alias_of(setting: str, what: str) -> Rule[str]:
    """A key of the Django setting ``setting`` (``RQ_QUEUES``, ``STORAGES``, ``DATABASES``)."""

    def problem(name: str, value: Any) -> Invalid | None:
        known = getattr(settings, setting, {})
        if isinstance(value, str) and value in known:
            return None
        return Invalid(
            f"{SETTING_NAME}[{name!r}] is {value!r}, which is not {what} of settings.{setting}.",
            hint=f"Known: {', '.join(known) or 'none'}.",
        )

    return Rule("str", problem)


#: The events a webhook endpoint may ask for (``"events"``), as the body's ``event`` names them.
WEBHOOK_EVENTS = ("started", "finished", "canceled", "error")


def endpoint_problem(endpoint: Any) -> str | None:
    """What is wrong with one webhook endpoint ``{"url", "secret", "events"}``; ``None``: fine.
    Also the rule of a service's ``webhooks`` (check E031)."""
    if not isinstance(endpoint, dict):
        return "each endpoint must be a dict with 'url' and 'secret'"
    unknown = set(endpoint) - {"url", "secret", "events"}
    if unknown:
        return f"an endpoint has unknown key(s) {', '.join(sorted(map(repr, unknown)))}"
    url = endpoint.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return f"an endpoint's 'url' must be an http:// or https:// URL, not {url!r}"
    if not isinstance(endpoint.get("secret"), str) or not endpoint["secret"]:
        return f"the endpoint {url} needs a non-empty 'secret' string"
    events = endpoint.get("events", WEBHOOK_EVENTS)
    if not isinstance(events, list | tuple) or not set(events) <= set(WEBHOOK_EVENTS):
        return f"the endpoint {url}'s 'events' must be a list of {', '.join(WEBHOOK_EVENTS)}"
    return None


def webhooks() -> Rule[list[dict[str, Any]]]:
    def problem(name: str, value: Any) -> Invalid | None:
        if not isinstance(value, list | tuple):
            return Invalid(f"{SETTING_NAME}[{name!r}] must be a list of endpoints.")
        for endpoint in value:
            wrong = endpoint_problem(endpoint)
            if wrong:
                return Invalid(f"{SETTING_NAME}[{name!r}]: {wrong}.")
        return None

    return Rule("list[dict]", problem)


def intervals() -> Rule[list[int]]:
    return Rule(
        "list[int]",
        _must_be(
            "a list of whole seconds >= 0",
            lambda v: isinstance(v, list | tuple) and all(is_int(i) and i >= 0 for i in v),
        ),
    )


def optional_queue() -> Rule[str | None]:
    queue = alias_of("RQ_QUEUES", "a queue")
    return Rule("str | None", lambda name, v: None if v is None else queue.problem(name, v))


def base_url() -> Rule[str]:
    return Rule(
        "str",
        _must_be(
            '"" or an http:// or https:// URL',
            lambda v: isinstance(v, str) and (v == "" or v.startswith(("http://", "https://"))),
        ),
    )


def literal(value: Any) -> str:
    """A value as the settings reference writes it: ``"default"``, ``5000``, ``None``."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


# --- the table ------------------------------------------------------------------------------


class ExportSettings:
    """Attribute access to ``settings.REPORT_EXPORT``, defaults filled in, typed per key."""

    # django-rq queue (a key of RQ_QUEUES) that export jobs are enqueued on.
    QUEUE = Setting("default", alias_of("RQ_QUEUES", "a queue"), 1)
    # Alias in settings.STORAGES holding finished files, parts and checkpoints.
    STORAGE = Setting("default", alias_of("STORAGES", "an alias"), 2, also=("W001",))
    # Folder inside that storage under which every export file is written.
    STORAGE_PREFIX: Setting[str] = Setting("report_export", anything("str"), None)
    # Rows read and written per chunk; progress, pause and cancel act between chunks.
    CHUNK_SIZE = Setting(5000, integer(1), 7)
    # Seconds between heartbeats of a running export.
    HEARTBEAT_INTERVAL = Setting(5, number(0, above=True), 10, also=("E016",))
    # Seconds without a heartbeat after which a running export's worker is taken as lost.
    STALE_AFTER = Setting(30, number(0), 7, also=("E016",))
    # Seconds to wait for a running export to acknowledge pause or cancel.
    CANCEL_TIMEOUT = Setting(10, number(0), 7)
    # Seconds between durable checkpoints (part uploaded to storage, key saved in the database).
    CHECKPOINT_INTERVAL = Setting(10, number(0), 11)
    # How many times an export whose worker was lost is continued before it is marked Error.
    MAX_RETRIES = Setting(3, integer(0), 12)
    # Finished files and records older than this many days are removed by the cleanup command.
    RETENTION_DAYS = Setting(30, integer(0), 15)
    # "service": one export slot per service; "user": one slot per service and user.
    SLOT_SCOPE: Setting[Literal["service", "user"]] = Setting(
        "service", one_of("service", "user"), 7
    )
    # Neutralise CSV cells a spreadsheet would run as a formula.
    CSV_FORMULA_GUARD: Setting[bool] = Setting(True, anything("bool"), None)
    # "stream": the download endpoint streams the file; "redirect": 302 to storage's URL.
    DOWNLOAD: Setting[Literal["stream", "redirect"]] = Setting(
        "stream", one_of("stream", "redirect"), 7, also=("E009",)
    )
    # HTTP status for an authenticated caller without the service's read permission.
    PERMISSION_DENIED_STATUS: Setting[Literal[401, 403]] = Setting(401, one_of(401, 403), 7)
    # Seconds a granted read permission is trusted (API).
    PERMISSION_CACHE_SECONDS = Setting(5, number(0), 7)
    # Database alias the export queries read from (a read replica, say).
    DATABASE_ALIAS = Setting("default", alias_of("DATABASES", "a database"), 6)
    # Socket timeout, in seconds, of every Redis call made by the API and the job.
    REDIS_TIMEOUT = Setting(2.0, number(0, above=True), 14)
    # RQ job timeout, in seconds, of one run of an export (between start/resume and pause).
    JOB_TIMEOUT = Setting(86400, job_timeout(), 13)
    # Extra format writers: {"name": "dotted.path.WriterClass"}.
    FORMATS: Setting[dict[str, str]] = Setting({}, anything("dict[str, str]"), None)
    # On PostgreSQL, let the database write the built-in formats (COPY, string_agg): the same
    # bytes as the Python writers, several times faster. False: always the ORM reader.
    FAST_PATH: Setting[bool] = Setting(True, anything("bool"), None)
    # On SQLite, a process of the reader's own reads and encodes every other chunk of the
    # flat formats, on the machine's second core. False: the job's process reads them all.
    SQLITE_READ_PROCESS: Setting[bool] = Setting(True, anything("bool"), None)
    # Exports of more rows than this are split into key-range shards run by parallel jobs
    # (ceil(rows / SHARD_ROWS) shards, at most MAX_SHARDS); None: only when asked for.
    SHARD_ROWS = Setting(1_000_000, optional_integer(1), 7)
    # On PostgreSQL, an export the planner estimates at more rows than this shows that
    # estimate as its total while it runs, instead of counting them first; None: always count.
    COUNT_ESTIMATE_ABOVE = Setting(1_000_000, optional_integer(0), 7)
    # Most shards one export is split into, whoever asks.
    MAX_SHARDS = Setting(4, integer(1), 7)
    # Webhook endpoints told of every service's exports: [{"url", "secret", "events"}].
    WEBHOOKS: Setting[list[dict[str, Any]]] = Setting([], webhooks(), 26)
    # Queue of the webhook and email jobs; None: QUEUE.
    NOTIFY_QUEUE = Setting(None, optional_queue(), 27)
    # Seconds a webhook receiver has to accept the connection, and then for each read.
    WEBHOOK_TIMEOUT = Setting(5, number(0, above=True), 28)
    # Seconds before each retry of a delivery that timed out or got a 5xx; one per retry.
    WEBHOOK_RETRY_INTERVALS: Setting[list[int]] = Setting([10, 60, 300, 1800], intervals(), 29)
    # Scheme and host the links of webhooks and emails start with ("https://shop.example").
    BASE_URL = Setting("", base_url(), 30, also=("W002",))

    # Defaults of the start options (docs/formats.md): the CSV cell delimiter, ...
    CSV_DELIMITER: Setting[Literal[",", ";", "\t", "|"]] = Setting(
        ",", one_of(",", ";", "\t", "|"), 17
    )
    # ... whether a CSV starts with a UTF-8 byte-order mark, ...
    CSV_BOM: Setting[bool] = Setting(False, boolean(), 18)
    # ... its record end, ...
    CSV_LINE_ENDING: Setting[Literal["lf", "crlf"]] = Setting("lf", one_of("lf", "crlf"), 19)
    # ... the decimal separator of its numbers, ...
    CSV_DECIMAL_SEPARATOR: Setting[Literal[".", ","]] = Setting(".", one_of(".", ","), 20)
    # ... its header row: field names, the fields' labels, or none.
    CSV_HEADER: Setting[Literal["names", "labels", "none"]] = Setting(
        "names", one_of("names", "labels", "none"), 21
    )
    # Time zone (IANA name) every format writes aware datetimes in.
    TIMEZONE: Setting[str] = Setting("UTC", timezone_name(), 22)

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, SETTING_NAME, {})
        if not isinstance(value, dict):
            raise ImproperlyConfigured(f"settings.{SETTING_NAME} must be a dict.")
        return value

    def reload(self) -> None:
        for name in SETTINGS:
            self.__dict__.pop(name, None)


#: Every key of ``REPORT_EXPORT``, in the order of the table.
SETTINGS: dict[str, Setting[Any]] = {
    name: value for name, value in vars(ExportSettings).items() if isinstance(value, Setting)
}
DEFAULTS: dict[str, Any] = {name: setting.default for name, setting in SETTINGS.items()}

export_settings = ExportSettings()


@receiver(setting_changed)
def _reload_export_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        export_settings.reload()
