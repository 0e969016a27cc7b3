"""XML: UTF-8 with a declaration, ``<{service}List>`` root, one ``<{service}>`` per record.

    <?xml version="1.0" encoding="UTF-8"?>
    <orderList>
    <order><id>1</id><total>12.50</total><customer__email>a@example.com</customer__email></order>
    <order><id>2</id><total>7.00</total></order>
    </orderList>

Each column is a child element named by the column; a ``None`` value omits the element
(absent = null, present and empty = empty string). Text is escaped (``&``, ``<``, ``>``, and
``\\r`` as ``&#13;`` so that it survives XML's line-end normalisation); characters XML 1.0
forbids (controls other than tab, newline and carriage return; U+FFFE, U+FFFF; lone
surrogates) are written as U+FFFD. Names that are not XML names are rewritten by ``xml_name``.

The writer builds the text itself rather than one lxml element per row (about five times
faster): a chunk is taken column by column, each column's texts joined by ``\\x00`` and escaped
in one pass, wrapped in their tags with one ``replace`` and split again; the records are the
columns zipped back together. It is well-formed by construction: markup comes only from the
tags, every name matches the XML ``Name`` production, and every text passed the escape (which
leaves no ``<``, ``&``, ``>`` and no forbidden character).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import chain, repeat
from typing import Any

from django_report_export.formats.base import FormatWriter, Row
from django_report_export.formats.documents import GAP, Gap, Items, Record
from django_report_export.formats.values import (
    PLAIN_TYPES,
    NoneType,
    check_width,
    columns_of,
    text_column,
    token_text,
)

#: XML 1.0 (fifth edition) ``NameStartChar`` and ``NameChar``, without the colon (namespaces).
_NAME_START = (
    "A-Z_a-z\xc0-\xd6\xd8-\xf6\xf8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_NAME_CHAR = _NAME_START + r"\-.0-9\xb7\u0300-\u036f\u203f-\u2040"
_NAME_RE = re.compile(f"[{_NAME_START}][{_NAME_CHAR}]*")
_NAME_START_RE = re.compile(f"[{_NAME_START}]")
_NAME_CHAR_RE = re.compile(f"[{_NAME_CHAR}]")

#: Characters XML 1.0 does not allow anywhere in a document.
_FORBIDDEN = "\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff"
_FORBIDDEN_RE = re.compile(f"[{_FORBIDDEN}]")
_SPECIAL_RE = re.compile(f"[&<>\r{_FORBIDDEN}]")

#: A column of a chunk is escaped as one string, its texts joined by ``SEPARATOR``, with
#: ``NULL`` standing for ``None``. Both are forbidden characters, so no escaped text holds
#: them; a column whose text does hold one is escaped text by text instead.
SEPARATOR = "\x00"
SEPARATOR_BYTE = SEPARATOR.encode()
NULL = "\x01"
_NULL_OR_SELF: dict[Any, Any] = {None: NULL}
# Forbidden and special characters, but for the separator and the null mark.
_BULK_FORBIDDEN_RE = re.compile("[\x02-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_BULK_SPECIAL_RE = re.compile("[&<>\r\x02-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_name(name: str) -> str:
    """``name`` as an XML element name, unchanged when it already is one.

    Each character that may not stand where it is (a colon, a space, a leading digit, ...) is
    written ``_xHHHH_`` with its code point in hex, the convention of .NET's
    ``XmlConvert.EncodeName``; an empty name becomes ``_``. ``order total`` ->
    ``order_x0020_total``, ``1st`` -> ``_x0031_st``.
    """
    if _NAME_RE.fullmatch(name):
        return name
    if not name:
        return "_"
    parts = []
    for position, char in enumerate(name):
        allowed = (_NAME_START_RE if position == 0 else _NAME_CHAR_RE).fullmatch(char)
        parts.append(char if allowed else f"_x{ord(char):04X}_")
    return "".join(parts)


def escape_text(text: str) -> str:
    """Element text: markup characters escaped, forbidden characters as U+FFFD."""
    if _SPECIAL_RE.search(text) is None:
        return text
    text = _FORBIDDEN_RE.sub("\ufffd", text)
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def escaped_join(texts: Sequence[str | None]) -> str:
    """The ``escape_text`` of each text joined by ``SEPARATOR``, ``None`` as ``NULL``."""
    nulls = texts.count(None)
    marked = list(map(_NULL_OR_SELF.get, texts, texts)) if nulls else texts
    joined = SEPARATOR.join(marked)  # type: ignore[arg-type]
    if joined.count(SEPARATOR) != len(texts) - 1 or joined.count(NULL) != nulls:
        # A text holds the separator or the null mark itself: escape text by text.
        return SEPARATOR.join([NULL if text is None else escape_text(text) for text in texts])
    if _BULK_SPECIAL_RE.search(joined) is None:
        return joined
    return (
        _BULK_FORBIDDEN_RE.sub("\ufffd", joined)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\r", "&#13;")
    )


def _joined_texts(column: list[Any]) -> tuple[str, str | None]:
    """The escaped texts of a column joined by ``SEPARATOR``, and how a null reads in it."""
    types = set(map(type, column))
    if types <= {str, NoneType}:
        return escaped_join(column), NULL if NoneType in types else None
    tokens = token_text(column, types)
    if tokens is not None:
        # Numbers, dates, UUIDs: nothing to escape; None reads "null", which no text is.
        return tokens.replace(",", SEPARATOR), "null" if NoneType in types else None
    texts = text_column(column, types)
    if types <= PLAIN_TYPES | {NoneType}:
        if NoneType not in types:
            return SEPARATOR.join(texts), None
        return SEPARATOR.join(map(_NULL_OR_SELF.get, texts, texts)), NULL
    return escaped_join(texts), NULL if NoneType in types else None


_DOCUMENT_TYPES = frozenset({Record, Items, Gap, NoneType})


def _document_element(opening: str, closing: str, value: Any) -> bytes:
    """A nested object's or a collection's element (nothing for ``None``)."""
    if value is None:
        return b""
    if isinstance(value, Gap):
        return b"".join((opening.encode(), GAP, closing.encode()))
    return f"{opening}{_document_content(value)}{closing}".encode()


def _document_content(value: Record | Items) -> str:
    """Child elements: a record's members (``None`` omitted, as for a record's columns), or
    one element per item of a collection."""
    if isinstance(value, Items):
        name = xml_name(value.item)
        return "".join(f"<{name}>{_document_content(record)}</{name}>" for record in value)
    parts = []
    for key, member in value.items():
        if member is None:
            continue
        name = xml_name(key)
        if isinstance(member, Record | Items):
            parts.append(f"<{name}>{_document_content(member)}</{name}>")
        else:
            parts.append(f"<{name}>{_joined_texts([member])[0]}</{name}>")
    return "".join(parts)


class XMLWriter(FormatWriter):
    name = "xml"
    extension = "xml"
    content_type = "application/xml"

    def __init__(self, service: str, columns: Sequence[str]) -> None:
        super().__init__(service, columns)
        self.root_name = xml_name(f"{service}List")
        self.record_name = xml_name(service)
        self.element_names = [xml_name(column) for column in self.columns]
        self._record_start = f"<{self.record_name}>".encode()
        self._record_end = f"</{self.record_name}>\n".encode()
        self._opening_tags = [f"<{name}>" for name in self.element_names]
        self._closing_tags = [f"</{name}>" for name in self.element_names]

    def header(self) -> bytes:
        return f'<?xml version="1.0" encoding="UTF-8"?>\n<{self.root_name}>\n'.encode()

    def encode_rows(self, rows: Sequence[Row], *, first: bool) -> bytes:
        if not rows:
            return b""
        width = len(self.columns)
        if not width:
            check_width(rows, 0)
            return (self._record_start + self._record_end) * len(rows)
        columns = []
        for column, opening, closing in zip(
            columns_of(rows, width), self._opening_tags, self._closing_tags, strict=True
        ):
            if set(map(type, column)) <= _DOCUMENT_TYPES:
                columns.append([_document_element(opening, closing, value) for value in column])
                continue
            joined, null = _joined_texts(column)
            # Every text in its element, in one pass: <a>1</a>\x00<a>2</a>\x00...
            elements = opening + joined.replace(SEPARATOR, closing + SEPARATOR + opening)
            elements += closing
            if null is not None:
                # A null is exactly <a>\x01</a> (or <a>null</a> from tokens): drop it.
                elements = elements.replace(opening + null + closing, "")
            # Encoded column by column, then joined as bytes: a chunk's text joined first would
            # take four bytes a character as soon as one of its texts held an emoji. The
            # separator is a forbidden character, so its byte is nowhere else in the UTF-8.
            # Every surrogate was replaced, so the text always encodes.
            column_elements = elements.encode("utf-8").split(SEPARATOR_BYTE)
            if len(column_elements) != len(rows):  # pragma: no cover - a bug if it happens
                raise AssertionError("XML column split out of step with its rows.")
            columns.append(column_elements)
        records = zip(repeat(self._record_start), *columns, repeat(self._record_end))
        return b"".join(chain.from_iterable(records))

    def encode_items(self, items: Items, *, first: bool) -> bytes:
        """A collection's next items, as in its wrapper element (``formats/documents.py``)."""
        return _document_content(items).encode()

    def footer(self, *, empty: bool) -> bytes:
        return f"</{self.root_name}>\n".encode()
