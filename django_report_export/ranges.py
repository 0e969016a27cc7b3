"""Conditional and ranged downloads of a published file (RFC 9110 §13, §14).

A strong ``ETag`` is the file's SHA-256 (``checksums``): ``If-None-Match`` is answered 304
(``django.utils.cache.get_conditional_response``). One byte range (``bytes=a-b``, ``a-``,
``-n``) is answered 206 with ``Content-Range``, one that starts past the end 416; a request
for several ranges, a malformed one, or one whose ``If-Range`` names another file gets the
whole file (200), as RFC 9110 allows. Django's ``FileResponse`` serves no ranges itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO

from django.http import FileResponse, HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import get_conditional_response
from django.utils.http import content_disposition_header

BLOCK = 1024 * 1024
RANGE = re.compile(r"bytes=(\d*)-(\d*)")
UNSATISFIABLE = "unsatisfiable"


class Unsatisfiable(Exception):
    """The range asked for starts beyond the file."""


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The first and last byte ``header`` asks for; ``None`` to send the whole file."""
    match = RANGE.fullmatch(header.strip())
    if match is None:
        return None  # several ranges, another unit, or malformed
    first, last = match.groups()
    if not first:
        if not last:
            return None
        if int(last) == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - int(last)), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if last and int(last) < start:
        return None
    if start >= size:
        raise Unsatisfiable
    return start, end


def file_response(
    request: HttpRequest | None,
    stored: IO[bytes],
    *,
    size: int,
    etag: str | None,
    filename: str,
    content_type: str,
) -> HttpResponseBase:
    """The download of ``stored`` (``size`` bytes) as ``request`` asks for it."""
    headers = {"Accept-Ranges": "bytes", **({"ETag": etag} if etag else {})}
    if request is not None and etag is not None:
        conditional = get_conditional_response(request, etag=etag)
        if conditional is not None:
            stored.close()
            for name, value in headers.items():
                conditional.headers[name] = value
            return conditional
    wanted = wanted_range(request, size, etag)
    response: HttpResponseBase
    if isinstance(wanted, tuple):
        start, end = wanted
        response = StreamingHttpResponse(
            read_range(stored, start, end - start + 1), status=206, content_type=content_type
        )
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        headers["Content-Disposition"] = content_disposition_header(True, filename) or ""
    elif wanted == UNSATISFIABLE:
        stored.close()
        response = JsonResponse(
            {"detail": f"The file has {size} bytes.", "type": "range_not_satisfiable"},
            status=416,
        )
        headers["Content-Range"] = f"bytes */{size}"
    else:
        response = FileResponse(
            stored, as_attachment=True, filename=filename, content_type=content_type
        )
    for name, value in headers.items():
        response.headers[name] = value
    return response


def wanted_range(
    request: HttpRequest | None, size: int, etag: str | None
) -> tuple[int, int] | str | None:
    """The range to send, ``UNSATISFIABLE``, or ``None`` for the whole file."""
    header = request.headers.get("Range") if request is not None else None
    if request is None or not header or request.method not in ("GET", "HEAD"):
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and (etag is None or if_range.strip() != etag):
        return None
    try:
        return byte_range(header, size)
    except Unsatisfiable:
        return UNSATISFIABLE


def read_range(stored: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    try:
        stored.seek(start)
        while length > 0:
            block = stored.read(min(BLOCK, length))
            if not block:
                return
            length -= len(block)
            yield block
    finally:
        stored.close()
