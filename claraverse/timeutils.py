"""Times on the wire are ISO 8601 in UTC with a `Z` suffix (CONTRACT §1)."""

from datetime import UTC, datetime


def isoformat_z(value: datetime | None) -> str | None:
    """`2024-01-15T10:30:00Z` (microseconds kept when present), or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
