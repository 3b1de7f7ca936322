"""Quotas (CONTRACT §11): tier limits from settings, per-user overrides, atomic daily counters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from claraverse.errors import ApplicationError
from claraverse.timeutils import isoformat_z

from .models import DailyUsage, QuotaOverride

LIMIT_NAMES = ("messages_per_day", "executions_per_day", "storage_mb")
COUNTERS = {"messages_per_day": "messages", "executions_per_day": "executions"}


def today() -> Any:
    """The current UTC day (quotas reset at midnight UTC)."""
    return timezone.now().astimezone(UTC).date()


def reset_at() -> str:
    """When today's counters start again."""
    return isoformat_z(datetime.combine(today() + timedelta(days=1), time.min, tzinfo=UTC))


def overrides_of(user) -> dict[str, int]:
    """The limits an admin replaced for this user (only those set)."""
    override = QuotaOverride.objects.filter(user=user).first()
    if override is None:
        return {}
    return {name: getattr(override, name) for name in LIMIT_NAMES if getattr(override, name) is not None}


def effective_limits(user) -> dict[str, int]:
    """The tier's limits with the user's overrides applied."""
    tier_limits = settings.QUOTA_TIERS.get(user.tier) or settings.QUOTA_TIERS["free"]
    return {**tier_limits, **overrides_of(user)}


def usage_today(user) -> dict[str, int]:
    """Today's counted messages and executions."""
    row = DailyUsage.objects.filter(user=user, day=today()).first()
    return {"messages": row.messages if row else 0, "executions": row.executions if row else 0}


def quota_exceeded(limit_name: str, limit: int, used: int) -> ApplicationError:
    """The 429 QUOTA_EXCEEDED error with `{limit, used, reset_at}`."""
    label = limit_name.replace("_", " ")
    return ApplicationError(
        "QUOTA_EXCEEDED",
        f"Daily quota reached ({label}: {limit}).",
        details={"limit": limit, "used": used, "reset_at": reset_at()},
    )


def quota_consume(*, user, limit_name: str) -> None:
    """Count one message or execution, or raise QUOTA_EXCEEDED; never overshoots under concurrency.

    The increment is one conditional UPDATE (`... WHERE count < limit`), so parallel requests
    cannot both take the last unit.
    """
    counter = COUNTERS[limit_name]
    limit = effective_limits(user)[limit_name]
    if limit <= 0:
        raise quota_exceeded(limit_name, limit, usage_today(user)[counter])
    if _count_one(user_id=user.pk, day=today(), counter=counter, limit=limit) is None:
        raise quota_exceeded(limit_name, limit, usage_today(user)[counter])


def _count_one(*, user_id, day, counter: str, limit: int) -> int | None:
    """Add one to today's `counter` if it is below `limit`, creating the day's row if needed; the new count,
    or None when the limit is reached.

    One statement (an upsert with a conditional update), where get-or-create plus a conditional
    UPDATE took four round trips on every chat message and execution start. PostgreSQL and SQLite
    (3.35+) both speak it.
    """
    table = connection.ops.quote_name(DailyUsage._meta.db_table)
    column = connection.ops.quote_name(counter)
    other = connection.ops.quote_name("executions" if counter == "messages" else "messages")
    # Identifiers come from the model and a fixed mapping; every value is a parameter.
    sql = (
        f"INSERT INTO {table} (user_id, day, {column}, {other}) VALUES (%s, %s, 1, 0) "  # noqa: S608
        f"ON CONFLICT (user_id, day) DO UPDATE SET {column} = {table}.{column} + 1 "
        f"WHERE {table}.{column} < %s RETURNING {column}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [user_id, day, limit])
        row = cursor.fetchone()
    return row[0] if row else None


def quota_consume_many(*, demands: Mapping[Any, int], limit_name: str) -> dict[Any, int]:
    """Count up to `demands[user]` messages or executions for each user at once; how many each got (by user pk).

    For batch starters (the schedule dispatcher): a few queries whatever the number of users. Each
    user gets what their limit still allows; the day's rows are locked while counted, so concurrent
    `quota_consume` calls and batches never overshoot a limit together.
    """
    counter = COUNTERS[limit_name]
    wanted = {user.pk: (user, count) for user, count in demands.items() if count > 0}
    if not wanted:
        return {}
    day = today()
    overrides = dict(
        QuotaOverride.objects.filter(user_id__in=wanted, **{f"{limit_name}__isnull": False}).values_list(
            "user_id", limit_name
        )
    )
    granted: dict[Any, int] = {}
    with transaction.atomic():
        DailyUsage.objects.bulk_create([DailyUsage(user_id=pk, day=day) for pk in wanted], ignore_conflicts=True)
        rows = list(DailyUsage.objects.select_for_update().filter(user_id__in=wanted, day=day).order_by("pk"))
        for row in rows:
            user, count = wanted[row.user_id]
            tier_limits = settings.QUOTA_TIERS.get(user.tier) or settings.QUOTA_TIERS["free"]
            limit = overrides.get(row.user_id, tier_limits[limit_name])
            granted[row.user_id] = max(0, min(count, limit - getattr(row, counter)))
            setattr(row, counter, getattr(row, counter) + granted[row.user_id])
        DailyUsage.objects.bulk_update([row for row in rows if granted[row.user_id]], [counter])
    return granted


def quota_check_storage(*, user, used_bytes: int, adding_bytes: int) -> None:
    """Refuse a file that would take the user's stored bytes past their storage_mb."""
    limit_mb = effective_limits(user)["storage_mb"]
    if used_bytes + adding_bytes > limit_mb * 1024 * 1024:
        raise ApplicationError(
            "QUOTA_EXCEEDED",
            f"Storage quota reached ({limit_mb} MB).",
            details={"limit": limit_mb, "used": round(used_bytes / (1024 * 1024), 2), "reset_at": None},
        )


def overrides_set(*, user, values: dict[str, int | None]) -> dict[str, int]:
    """Replace the given limits (None removes that one override)."""
    override, _ = QuotaOverride.objects.get_or_create(user=user)
    for name, value in values.items():
        setattr(override, name, value)
    override.save()
    return overrides_of(user)


def overrides_remove(*, user) -> None:
    """Back to the tier's limits."""
    QuotaOverride.objects.filter(user=user).delete()
