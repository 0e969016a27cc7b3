"""Values of a document's nested entries, as readers hand them to writers.

A nested object is a ``Record`` (a ``dict`` of its members' names to values), a collection
``Items`` (a ``list`` of ``Record``s that knows the XML element name of an item). JSON and
JSON Lines write them as objects and arrays like any ``dict`` and ``list``; the XML writer
writes a ``Record`` as child elements and ``Items`` as one ``item`` element each, where a
``JSONField``'s ``dict`` or ``list`` stays JSON text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class Record(dict[str, Any]):
    """A nested object's members, in declaration order."""


class Items(list[Record]):
    """A collection's items, in order; ``item`` names each one's XML element."""

    def __init__(self, records: Iterable[Record] = (), item: str = "item") -> None:
        super().__init__(records)
        self.item = item
