"""What the demo shop offers, as its tests expect it: each service's formats in order (the
seed's formats, then xlsx and JSON Lines; ``order``, a document, without csv and xlsx)."""

from __future__ import annotations

from typing import Any

DEMO_FORMATS = {
    "adminUser": ["json", "csv", "xlsx", "jsonl"],
    "category": ["json", "csv", "xlsx", "jsonl"],
    "customerAccount": ["json", "csv", "xlsx", "jsonl"],
    "dataFeed": ["json", "csv", "xlsx", "jsonl"],
    "dataFeedTemplate": ["json", "csv", "xlsx", "jsonl"],
    "inquiry": ["json", "csv", "xml", "xlsx", "jsonl"],
    "inventory": ["json", "csv", "xlsx", "jsonl"],
    "order": ["json", "xml", "jsonl"],
    "newsletterSubscriber": ["json", "csv", "xlsx", "jsonl"],
    "product": ["json", "csv", "xlsx", "jsonl"],
    "productRating": ["json", "csv", "xlsx", "jsonl"],
    "seoViews": ["json", "csv", "xlsx", "jsonl"],
    "transaction": ["json", "csv", "xlsx", "jsonl"],
    "voucher": ["json", "csv", "xlsx", "jsonl"],
    "voucherPreset": ["json", "csv", "xlsx", "jsonl"],
    "voucherTemplate": ["json", "csv", "xlsx", "jsonl"],
}


def flat_columns(service: Any) -> tuple[list[str], list[Any]]:
    """A flat service's column names (the writer's) and what the reader selects for each (its
    path, or expression), as an export of all its columns reads them."""
    from django_report_export.columns import column_names, selection

    names = column_names(service)
    return names, list(selection(service, names).items)
