"""The format registry: which writer serves ``format=csv``, ``json``, ``xml``, ...

Five formats are built in: csv, json, jsonl, xml and xlsx. A project adds more (or replaces a
built-in one) either in code::

    from django_report_export.formats import FormatWriter, register_format

    @register_format
    class NDJSONWriter(FormatWriter):
        name = "ndjson"
        ...

or in settings, read at every look-up (so ``override_settings`` works)::

    REPORT_EXPORT = {"FORMATS": {"ndjson": "myshop.exports.NDJSONWriter"}}

Settings win over code, code wins over the built-in writers.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_report_export.conf import export_settings
from django_report_export.formats.base import FormatWriter, Row
from django_report_export.formats.csv import CSVWriter
from django_report_export.formats.json import JSONWriter
from django_report_export.formats.jsonl import JSONLinesWriter
from django_report_export.formats.xlsx import XLSXWriter
from django_report_export.formats.xml import XMLWriter

__all__ = [
    "CSVWriter",
    "FormatWriter",
    "JSONLinesWriter",
    "JSONWriter",
    "Row",
    "XLSXWriter",
    "XMLWriter",
    "format_names",
    "get_writer_class",
    "register_format",
    "unregister_format",
]

BUILTIN_FORMATS: dict[str, type[FormatWriter]] = {
    CSVWriter.name: CSVWriter,
    JSONWriter.name: JSONWriter,
    JSONLinesWriter.name: JSONLinesWriter,
    XMLWriter.name: XMLWriter,
    XLSXWriter.name: XLSXWriter,
}

_registered: dict[str, type[FormatWriter]] = {}


def _check_writer_class(writer_class: object, origin: str) -> type[FormatWriter]:
    if not (isinstance(writer_class, type) and issubclass(writer_class, FormatWriter)):
        raise ImproperlyConfigured(
            f"{origin} is {writer_class!r}, which is not a subclass of "
            "django_report_export.formats.FormatWriter."
        )
    return writer_class


def register_format(
    writer_class: type[FormatWriter], *, name: str | None = None
) -> type[FormatWriter]:
    """Make ``writer_class`` serve format ``name`` (default: its ``name`` attribute).

    Returns the class, so it can be used as a class decorator. Registering a name again
    replaces the earlier writer.
    """
    _check_writer_class(writer_class, "The registered format writer")
    format_name = name if name is not None else writer_class.name
    if not format_name or not isinstance(format_name, str):
        raise ImproperlyConfigured(
            f"{writer_class.__qualname__} needs a non-empty `name` to be registered as a format."
        )
    _registered[format_name] = writer_class
    return writer_class


def unregister_format(name: str) -> None:
    """Forget a format registered with ``register_format`` (built-ins stay)."""
    _registered.pop(name, None)


def _setting_formats() -> dict[str, str]:
    formats = export_settings.FORMATS
    if not isinstance(formats, dict):
        raise ImproperlyConfigured(
            'settings.REPORT_EXPORT["FORMATS"] must be a dict of '
            '{"name": "dotted.path.WriterClass"}.'
        )
    return formats


def _import_setting_format(name: str, path: object) -> type[FormatWriter]:
    origin = f'settings.REPORT_EXPORT["FORMATS"][{name!r}]'
    if not isinstance(path, str):
        # A class given directly rather than its dotted path.
        return _check_writer_class(path, origin)
    try:
        writer_class = import_string(path)
    except ImportError as error:
        raise ImproperlyConfigured(f"{origin}: cannot import {path!r}: {error}") from error
    return _check_writer_class(writer_class, origin)


def get_writer_class(name: str) -> type[FormatWriter]:
    """The writer class of format ``name``; ``LookupError`` when there is none."""
    formats = _setting_formats()
    if name in formats:
        return _import_setting_format(name, formats[name])
    writer_class = _registered.get(name) or BUILTIN_FORMATS.get(name)
    if writer_class is None:
        known = ", ".join(format_names())
        raise LookupError(f"Unknown export format {name!r}; known formats: {known}.")
    return writer_class


def format_names() -> list[str]:
    """Names of every available format, sorted."""
    return sorted({*BUILTIN_FORMATS, *_registered, *_setting_formats()})
