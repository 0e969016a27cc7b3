"""What the demo shop offers, as its tests expect it: each service's formats in order (the
seed's formats, then xlsx and JSON Lines; ``order``, a document, without csv and xlsx)."""

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
