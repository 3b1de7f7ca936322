"""Reads of executions, always scoped to their owner."""

from __future__ import annotations

import math
from typing import Any

from django.db.models import Avg, Count, Max, QuerySet

from claraverse.errors import ApplicationError
from claraverse.timeutils import isoformat_z

from .models import FINISHED_STATUSES, Execution, ExecutionEvent, ExecutionStatus, ExecutionTrigger

STATS_DURATION_SAMPLE = 10_000  # p95 over the most recent finished runs


def execution_list(
    *, user, agent_id: str | None = None, status: str | None = None, trigger: str | None = None
) -> QuerySet[Execution]:
    """The user's executions, newest first, optionally filtered."""
    executions = Execution.objects.filter(user=user).order_by("-created_at", "-id")
    if agent_id:
        executions = executions.filter(agent_id=agent_id)
    if status:
        executions = executions.filter(status=status)
    if trigger:
        executions = executions.filter(trigger=trigger)
    return executions


def execution_get(*, user, execution_id: str) -> Execution:
    """The user's execution, or a 404 (also for another user's)."""
    execution = Execution.objects.filter(pk=execution_id, user=user).first()
    if execution is None:
        raise ApplicationError("NOT_FOUND", "Execution not found.")
    return execution


def execution_events(*, execution_id: str, after_seq: int = 0) -> list[ExecutionEvent]:
    """The recorded events of an execution after `after_seq`, in order."""
    return list(ExecutionEvent.objects.filter(execution_id=execution_id, seq__gt=after_seq).order_by("seq"))


def _percentile(sorted_values: list[int], fraction: float) -> int | None:
    if not sorted_values:
        return None
    rank = max(0, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[rank]


def execution_stats(*, user, agent_id: str) -> dict[str, Any]:
    """Counts by status and trigger, success rate (completed / finished), mean and p95 duration."""
    executions = Execution.objects.filter(user=user, agent_id=agent_id)
    by_status = {choice: 0 for choice in ExecutionStatus.values}
    for row in executions.values("status").annotate(n=Count("id")):
        by_status[row["status"]] = row["n"]
    by_trigger = {choice: 0 for choice in ExecutionTrigger.values}
    for row in executions.values("trigger").annotate(n=Count("id")):
        by_trigger[row["trigger"]] = row["n"]
    finished = sum(by_status[status] for status in FINISHED_STATUSES)
    timed = executions.filter(status__in=FINISHED_STATUSES, duration_ms__isnull=False)
    aggregates = timed.aggregate(avg=Avg("duration_ms"))
    durations = sorted(timed.order_by("-created_at").values_list("duration_ms", flat=True)[:STATS_DURATION_SAMPLE])
    last = executions.aggregate(last=Max("created_at"))["last"]
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_trigger": by_trigger,
        "success_rate": round(by_status[ExecutionStatus.COMPLETED] / finished, 4) if finished else None,
        "avg_duration_ms": round(aggregates["avg"]) if aggregates["avg"] is not None else None,
        "p95_duration_ms": _percentile(durations, 0.95),
        "last_execution_at": isoformat_z(last),
    }
