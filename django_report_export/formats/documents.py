"""Values of a document's nested entries, as readers hand them to writers.

A nested object is a ``Record`` (a ``dict`` of its members' names to values), a collection
``Items`` (a ``list`` of ``Record``s that knows the XML element name of an item). JSON and
JSON Lines write them as objects and arrays like any ``dict`` and ``list``; the XML writer
writes a ``Record`` as child elements and ``Items`` as one ``item`` element each, where a
``JSONField``'s ``dict`` or ``list`` stays JSON text.

A collection too long to hold is a ``Gap``: the writer encodes the record with ``GAP`` where
the collection's items go, and the reader writes the items there in batches, each encoded by
the writer's ``encode_items`` (``document_pieces``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol


class Record(dict[str, Any]):
    """A nested object's members, in declaration order."""


class Items(list[Record]):
    """A collection's items, in order; ``item`` names each one's XML element."""

    def __init__(self, records: Iterable[Record] = (), item: str = "item") -> None:
        super().__init__(records)
        self.item = item


class Gap:
    """A collection whose items are written after its record is encoded: it encodes as
    ``GAP``, between the collection's opening and closing bytes."""

    def __init__(self, item: str = "item") -> None:
        self.item = item


#: A byte no writer writes for a value (JSON escapes it, XML writes it as U+FFFD): where an
#: encoded record holds it, it holds a ``Gap``.
GAP = b"\x02"


class ItemsWriter(Protocol):
    def encode_items(self, items: Items, *, first: bool) -> bytes:
        """A collection's next items, as between its opening and closing bytes; ``first``:
        none of the collection's items has been written before."""
        ...


def document_pieces(
    writer: ItemsWriter, record: bytes, batches: Iterable[Iterable[Items]]
) -> Iterator[bytes]:
    """An encoded ``record`` with each ``Gap`` filled, in order, by the items of one of
    ``batches`` (each an iterable of a collection's items in batches)."""
    head, *tails = record.split(GAP)
    if len(tails) != len(batches := list(batches)):  # pragma: no cover - a bug if it happens
        raise AssertionError("An encoded record holds another number of gaps.")
    yield head
    for items, tail in zip(batches, tails, strict=True):
        first = True
        for batch in items:
            if batch:
                yield writer.encode_items(batch, first=first)
                first = False
        yield tail
