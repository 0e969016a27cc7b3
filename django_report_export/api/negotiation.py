from __future__ import annotations

from rest_framework.negotiation import DefaultContentNegotiation


class _NoUrlFormatOverride:
    URL_FORMAT_OVERRIDE = None


class ExportContentNegotiation(DefaultContentNegotiation):
    """Content negotiation that leaves ``?format=`` alone: here it names the export format.

    DRF's default reads ``?format=`` (``URL_FORMAT_OVERRIDE``) to pick a renderer, which would
    answer ``format=csv`` with a 404 before the view runs. Renderers are chosen by the
    ``Accept`` header only.
    """

    settings = _NoUrlFormatOverride  # type: ignore[assignment]
