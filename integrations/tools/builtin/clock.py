"""`get_current_time`: the current date and time in an IANA time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from integrations.tools.registry import Tool, ToolContext, ToolExecutionError

DEFAULT_TIMEZONE = "UTC"
# The longest IANA names are about 30 characters; anything much longer is not a zone.
MAX_TIMEZONE_LENGTH = 64
# Spelled out rather than strftime("%A"), which follows the process locale.
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _shown(name: str) -> str:
    # The name comes from a model or a user: keep error messages short and printable.
    shown = "".join(char if char.isprintable() else "?" for char in name[:MAX_TIMEZONE_LENGTH])
    return shown + ("…" if len(name) > MAX_TIMEZONE_LENGTH else "")


@lru_cache(maxsize=1)
def _zones_by_folded_name() -> dict[str, str]:
    return {zone.casefold(): zone for zone in available_timezones()}


def resolve_timezone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name (case-insensitive), or a ToolExecutionError naming the unknown zone."""
    unknown = ToolExecutionError(
        f"Unknown time zone '{_shown(name)}'. Use an IANA name such as 'Europe/Paris' or 'UTC'."
    )
    if not name or len(name) > MAX_TIMEZONE_LENGTH:
        raise unknown
    try:
        return ZoneInfo(name)
    # ValueError covers malformed keys (absolute or '..' paths); OSError covers directories like 'America'.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    # Models often write 'utc' or 'europe/paris'; the file lookup above is case-sensitive on Linux.
    canonical = _zones_by_folded_name().get(name.casefold())
    if canonical is None:
        raise unknown
    return ZoneInfo(canonical)


def _format_offset(moment: datetime) -> str:
    offset = moment.utcoffset()
    total_minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if total_minutes < 0 else "+"
    hours, minutes = divmod(abs(total_minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def describe_time(timezone: str, now: datetime) -> dict[str, Any]:
    """`now` (an aware datetime) described in `timezone`: iso with offset, utc with Z, unix seconds, weekday, offset."""
    # Whole seconds, so that iso, utc and unix all name the same instant.
    instant = now.astimezone(UTC).replace(microsecond=0)
    zone = resolve_timezone(timezone)
    local = instant.astimezone(zone)
    return {
        "timezone": zone.key,
        "iso": local.isoformat(),
        "utc": instant.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "unix": int(instant.timestamp()),
        "weekday": WEEKDAYS[local.weekday()],
        "utc_offset": _format_offset(local),
    }


def _execute(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    timezone = (arguments.get("timezone") or "").strip() or DEFAULT_TIMEZONE
    return describe_time(timezone, datetime.now(UTC))


GET_CURRENT_TIME = Tool(
    name="get_current_time",
    display_name="Get Current Time",
    description=(
        "Get the current date and time, in UTC or in a given IANA time zone: ISO 8601 with offset, "
        "UTC, Unix seconds, weekday and UTC offset."
    ),
    category="utilities",
    icon="Clock",
    parameters={
        "type": "object",
        "properties": {
            "timezone": {
                "type": "string",
                "description": "IANA time zone name, e.g. 'America/New_York' or 'Asia/Kolkata'. Defaults to 'UTC'.",
            }
        },
        "additionalProperties": False,
    },
    execute=_execute,
    keywords=("time", "date", "clock", "now", "today", "timezone", "day", "weekday", "current", "schedule"),
)
