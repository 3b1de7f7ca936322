"""Limit/offset pagination with the list shape of CONTRACT §1.

`{"<plural>": [...], "total": N, "limit": L, "offset": O}`; `limit` defaults to 20 and must be
1-100, `offset` must be >= 0. A bad value is a 400 VALIDATION_ERROR, never a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import serializers

from .errors import ApplicationError

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Far beyond any real list, and small enough for every database's integer type.
MAX_OFFSET = 1_000_000_000


class PageParamsSerializer(serializers.Serializer):
    """Query parameters `limit` and `offset`, shared by every list endpoint."""

    limit = serializers.IntegerField(required=False, default=DEFAULT_LIMIT, min_value=1, max_value=MAX_LIMIT)
    offset = serializers.IntegerField(required=False, default=0, min_value=0, max_value=MAX_OFFSET)


@dataclass(frozen=True)
class Page:
    """One page of a queryset or list."""

    items: list
    total: int
    limit: int
    offset: int


def validated_query(serializer_class: type[serializers.Serializer], query_params) -> dict:
    """Validate query parameters with `serializer_class`; raise the 400 envelope on bad input."""
    data = {key: query_params.get(key) for key in query_params}
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        from .errors import validation_details

        details = validation_details(serializer.errors)
        raise ApplicationError("VALIDATION_ERROR", "Invalid query parameters.", details=details)
    return serializer.validated_data


def paginate(items, *, limit: int, offset: int) -> Page:
    """Slice a queryset (or list) that already has a stable order."""
    total = items.count() if hasattr(items, "count") and not isinstance(items, list) else len(items)
    return Page(items=list(items[offset : offset + limit]), total=total, limit=limit, offset=offset)


def list_body(plural: str, page: Page, rendered: list) -> dict:
    """The JSON body of a list answer."""
    return {plural: rendered, "total": page.total, "limit": page.limit, "offset": page.offset}
