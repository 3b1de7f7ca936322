"""Reads for the admin API: users with their limits and usage, and analytics from recorded usage."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.apps import apps
from django.db.models import Avg, Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import DailyUsage, QuotaOverride, User
from accounts.quotas import effective_limits, overrides_of, today, usage_today
from claraverse.errors import ApplicationError

TIME_SERIES_DAYS = 30


def user_list(*, search: str | None = None, tier: str | None = None) -> QuerySet[User]:
    """Users, newest first, with `has_overrides` annotated."""
    users = User.objects.annotate(has_overrides=Exists(QuotaOverride.objects.filter(user=OuterRef("pk"))))
    if search:
        users = users.filter(Q(email__icontains=search) | Q(name__icontains=search))
    if tier:
        users = users.filter(tier=tier)
    return users.order_by("-created_at", "-id")


def user_get(*, user_id: str) -> User:
    """One user or a 404."""
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        raise ApplicationError("NOT_FOUND", "User not found.")
    return user


def _count(model_label: str, **filters) -> int:
    try:
        model = apps.get_model(model_label)
    except LookupError:  # an app without its model yet
        return 0
    return model.objects.filter(**filters).count()


def user_details(user: User) -> dict[str, Any]:
    """Effective limits, overrides, today's usage and counts of what the user owns."""
    from uploads.selectors import storage_used_bytes

    return {
        "limits": effective_limits(user),
        "overrides": overrides_of(user),
        "usage_today": usage_today(user),
        "counts": {
            "agents": _count("agents.Agent", user=user),
            "executions": _count("executions.Execution", user=user),
            "memories": _count("memories.Memory", user=user),
            "chats": _count("chats.Chat", user=user),
            "storage_bytes": storage_used_bytes(user=user),
        },
    }


def _since() -> Any:
    return timezone.now() - timedelta(days=TIME_SERIES_DAYS)


def _daily_series(queryset, field: str = "created_at") -> list[dict[str, Any]]:
    """Counts per day over the last 30 days, every day present (zeros included)."""
    rows = (
        queryset.filter(**{f"{field}__gte": _since()})
        .annotate(day=TruncDate(field))
        .values("day")
        .annotate(count=Count("pk"))
    )
    by_day = {row["day"]: row["count"] for row in rows}
    start = today() - timedelta(days=TIME_SERIES_DAYS - 1)
    return [
        {"date": (start + timedelta(days=offset)).isoformat(), "count": by_day.get(start + timedelta(days=offset), 0)}
        for offset in range(TIME_SERIES_DAYS)
    ]


def analytics_overview() -> dict[str, Any]:
    """Users, active users (30 days), agents, executions, chats, messages today."""
    from agents.models import Agent
    from chats.models import Chat
    from executions.models import Execution
    from integrations.models import LLMUsage

    active = (
        User.objects.filter(Q(last_login__gte=_since()) | Q(daily_usage__day__gte=_since().date())).distinct().count()
    )
    return {
        "users": User.objects.count(),
        "active_users": active,
        "agents": Agent.objects.count(),
        "executions": Execution.objects.count(),
        "chats": Chat.objects.count(),
        "messages_today": DailyUsage.objects.filter(day=today()).aggregate(total=Sum("messages"))["total"] or 0,
        "llm_requests": LLMUsage.objects.count(),
    }


def _usage_by(field: str, label: str) -> list[dict[str, Any]]:
    from integrations.models import LLMUsage

    rows = (
        LLMUsage.objects.values(field)
        .annotate(
            requests=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            errors=Count("id", filter=Q(outcome="error")),
            avg_latency_ms=Avg("latency_ms"),
        )
        .order_by(field)
    )
    return [
        {
            label: row[field],
            "requests": row["requests"],
            "tokens": (row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0),
            "prompt_tokens": row["prompt_tokens"] or 0,
            "completion_tokens": row["completion_tokens"] or 0,
            "errors": row["errors"],
            "error_rate": round(row["errors"] / row["requests"], 4) if row["requests"] else 0.0,
            "avg_latency_ms": round(row["avg_latency_ms"] or 0),
        }
        for row in rows
    ]


def analytics_providers() -> dict[str, Any]:
    """Requests, tokens, errors and mean latency per provider."""
    return {"providers": _usage_by("provider_name", "provider")}


def analytics_models() -> dict[str, Any]:
    """Requests, tokens, errors and mean latency per model."""
    return {"models": _usage_by("model_id", "model")}


def analytics_chats() -> dict[str, Any]:
    """Chats in total, chat LLM calls, and chats started per day over the last 30 days."""
    from chats.models import Chat
    from integrations.models import LLMUsage

    return {
        "total": Chat.objects.count(),
        "messages": LLMUsage.objects.filter(source="chat").count(),
        "time_series": _daily_series(Chat.objects.all()),
    }


def analytics_agents() -> dict[str, Any]:
    """Agents and executions in total, and executions per day over the last 30 days."""
    from agents.models import Agent
    from executions.models import Execution

    return {
        "total": Agent.objects.count(),
        "executions": Execution.objects.count(),
        "time_series": _daily_series(Execution.objects.all()),
    }
