"""The file options of an export: how its CSV is written and in which time zone its datetimes are.

``OPTIONS`` names every option, the values a start may give and the setting that holds its
project-wide default. ``parse_options`` turns a start's query parameters into a ``FileOptions``
(problems reported by parameter name); ``FileOptions.to_json`` is what the export records and
the status body echoes under ``options``, ``FileOptions.from_json`` reads it back when the export
runs, so a paused export goes on with the options it started with, whatever the settings say
later. CSV options are for CSV writers only: for another format a valid one is accepted and has
no effect (the status body shows the options that apply), a bad value is a 400 all the same.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db.models import Model

from django_report_export.conf import export_settings

#: Delimiter characters by the value a start gives; ``tab`` stands for the tab character.
DELIMITERS = {",": ",", ";": ";", "tab": "\t", "\t": "\t", "|": "|"}
LINE_ENDINGS = {"lf": "\n", "crlf": "\r\n"}
DECIMAL_SEPARATORS = (".", ",")
HEADERS = ("names", "labels", "none")
BOOLEANS = {"true": True, "false": False}
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Option:
    """A start parameter: its name, the values it takes (as a start writes them) and the
    setting of its default."""

    name: str
    choices: tuple[str, ...]
    setting: str
    csv_only: bool = True
    help: str = ""


OPTIONS: dict[str, Option] = {
    option.name: option
    for option in (
        Option("delimiter", (",", ";", "tab", "|"), "CSV_DELIMITER", help="Cell delimiter."),
        Option("bom", ("true", "false"), "CSV_BOM", help="Start with a UTF-8 byte-order mark."),
        Option("line_ending", ("lf", "crlf"), "CSV_LINE_ENDING", help="Record end."),
        Option(
            "decimal_separator", DECIMAL_SEPARATORS, "CSV_DECIMAL_SEPARATOR", help="In numbers."
        ),
        Option("header", HEADERS, "CSV_HEADER", help="Header row: field names, labels, none."),
        Option("timezone", (), "TIMEZONE", csv_only=False, help="IANA name, e.g. Europe/Berlin."),
    )
}
NAMES = tuple(OPTIONS)


@dataclass(frozen=True)
class FileOptions:
    """An export's resolved options (the defaults are the ones of an export before options)."""

    delimiter: str = ","
    bom: bool = False
    line_ending: str = "lf"
    decimal_separator: str = "."
    header: str = "names"
    timezone: str = "UTC"
    #: The header row's labels (CSV's ``header="labels"``; an xlsx's where its columns
    #: declare labels), resolved in the language of the start.
    labels: tuple[str, ...] | None = None

    @property
    def record_end(self) -> str:
        return LINE_ENDINGS[self.line_ending]

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def public(self, csv: bool = True) -> dict[str, Any]:
        """The options as the status body shows them (CSV ones only for a CSV export)."""
        values = {
            "delimiter": self.delimiter,
            "bom": self.bom,
            "line_ending": self.line_ending,
            "decimal_separator": self.decimal_separator,
            "header": self.header,
            "timezone": self.timezone,
        }
        return values if csv else {"timezone": self.timezone}

    def to_json(self, csv: bool = True) -> dict[str, Any]:
        values = self.public(csv)
        if self.labels is not None:  # CSV's header=labels, or an xlsx's declared labels
            values["labels"] = list(self.labels)
        return values

    @classmethod
    def from_json(cls, values: Mapping[str, Any] | None) -> FileOptions:
        """Options as recorded; what is missing (an export older than options) is the default
        of an export before them."""
        known = {key: value for key, value in (values or {}).items() if key in _FIELDS}
        if known.get("labels") is not None:
            known["labels"] = tuple(known["labels"])
        return cls(**known)


_FIELDS = frozenset(FileOptions.__dataclass_fields__)


def defaults() -> FileOptions:
    """The project's defaults, from the settings."""
    if not is_timezone(export_settings.TIMEZONE):
        raise ImproperlyConfigured(
            f"settings.REPORT_EXPORT['TIMEZONE'] is {export_settings.TIMEZONE!r}, "
            "which is not an IANA time zone name."
        )
    return FileOptions(
        delimiter=export_settings.CSV_DELIMITER,
        bom=export_settings.CSV_BOM,
        line_ending=export_settings.CSV_LINE_ENDING,
        decimal_separator=export_settings.CSV_DECIMAL_SEPARATOR,
        header=export_settings.CSV_HEADER,
        timezone=export_settings.TIMEZONE,
    )


def is_timezone(name: Any) -> bool:
    if not isinstance(name, str) or not name or name != name.strip():
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def parse_value(name: str, raw: str) -> Any:
    """The value of option ``name`` from its query text; ``ValueError`` says what is wrong."""
    if name == "delimiter":
        if raw not in DELIMITERS:
            raise ValueError("One of: , ; tab | (tab also as the tab character, %09).")
        return DELIMITERS[raw]
    text = raw.strip()
    if name == "timezone":
        if not is_timezone(text):
            raise ValueError(f"Unknown time zone {text!r}; give an IANA name, e.g. Europe/Berlin.")
        return text
    if name == "bom":
        if text.lower() not in BOOLEANS:
            raise ValueError("One of: true, false.")
        return BOOLEANS[text.lower()]
    choices = OPTIONS[name].choices
    if text.lower() not in choices:
        raise ValueError(f"One of: {', '.join(choices)}.")
    return text.lower()


def parse_options(
    params: Mapping[str, Sequence[str]],
    *,
    csv: bool,
    errors: dict[str, list[str]],
) -> FileOptions:
    """The options a start gives over the project's defaults; problems go into ``errors``."""
    given: dict[str, Any] = {}
    for name in NAMES:
        values = list(params.get(name, []))
        if not values:
            continue
        if len(values) > 1:
            errors[name] = [f"{name!r} may be given only once."]
            continue
        try:
            value = parse_value(name, values[0])
        except ValueError as error:
            errors[name] = [str(error)]
            continue
        if csv or not OPTIONS[name].csv_only:
            given[name] = value
    return replace(defaults(), **given)


def with_labels(
    options: FileOptions,
    model: type[Model],
    fields: Sequence[str],
    *,
    labels: Sequence[str] | None = None,
) -> FileOptions:
    """``options`` with the header labels of ``fields`` (``labels`` when given: the
    columns' own, ``columns.header_labels``), when its header is labels."""
    if options.header != "labels":
        return replace(options, labels=None)
    if labels is None:
        labels = [field_label(model, path) for path in fields]
    return replace(options, labels=tuple(labels))


def field_label(model: type[Model], path: str) -> str:
    """A column's label: the ``verbose_name`` of the model field at the end of ``path``
    (across relations, ``customer__email``), in the active language; the path itself when no
    model field is there."""
    current: Any = model
    found: Any = None
    for part in path.split("__"):
        if current is None:
            return path
        try:
            found = current._meta.pk if part == "pk" else current._meta.get_field(part)
        except FieldDoesNotExist:
            return path
        current = found.related_model if found.is_relation else None
    name = getattr(found, "verbose_name", None)
    return str(name) if name else path
