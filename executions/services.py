"""Execution writes: create and enqueue, cancel, reap stale runs, prune old ones."""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apikeys.services import webhook_schedule
from claraverse.errors import ApplicationError

from .events import EventRecorder
from .models import FINISHED_STATUSES, Execution, ExecutionStatus

logger = logging.getLogger("claraverse.executions")

MAX_INPUT_BYTES = 256 * 1024


def validate_execution_input(value: Any, *, field: str = "input") -> dict:
    """An execution input is a JSON object of bounded size."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApplicationError(
            "VALIDATION_ERROR", f"{field} must be a JSON object.", details={field: ["Must be an object."]}
        )
    if len(json.dumps(value, default=str)) > MAX_INPUT_BYTES:
        raise ApplicationError(
            "VALIDATION_ERROR",
            f"{field} is too large.",
            details={field: [f"Must encode to at most {MAX_INPUT_BYTES} bytes."]},
        )
    return value


def _send_run(execution_id: str) -> None:
    """Publish the run task; with the broker down the committed row stays pending and the reaper enqueues it."""
    from .tasks import run_execution

    try:
        run_execution.delay(execution_id)
    except Exception:  # kombu's OperationalError and friends: the caller's request must not fail for it
        logger.warning("could not enqueue execution %s; the reaper will enqueue it again", execution_id, exc_info=True)


def execution_enqueue(*, execution_id: str) -> None:
    """Hand the execution to a worker once the surrounding transaction commits."""
    transaction.on_commit(lambda: _send_run(execution_id))


def execution_enqueue_now(*, execution_id: str) -> None:
    """Enqueue outside any transaction (the execution row is already committed)."""
    _send_run(execution_id)


# No savepoint when nested (the trigger's transaction): a failure here fails the caller's whole
# transaction anyway, and a savepoint is two more round trips on every execution start.
@transaction.atomic(savepoint=False)
def execution_create(
    *,
    user,
    agent,
    trigger: str,
    input: Any = None,
    parent: Execution | None = None,
    enqueue: bool = True,
    api_key=None,
    webhook_url: str = "",
) -> Execution:
    """Record a pending execution of the agent's current workflow version and (by default) enqueue it."""
    from accounts.quotas import quota_consume
    from workflows.selectors import workflow_versions_of

    # Validated before the quota is counted: a refused input must not use up a run of the day.
    input = validate_execution_input(input)
    # Every way an execution starts (REST, WebSocket, trigger, schedule, sub-agent, MCP) passes here.
    quota_consume(user=user, limit_name="executions_per_day")
    execution = Execution.objects.create(
        user=user,
        agent_id=agent.id,
        trigger=trigger,
        input=input,
        # The version only: the graph itself (up to WORKFLOW_MAX_NODES nodes of JSON) is read by the worker.
        workflow_version=workflow_versions_of(agent_ids=[agent.id]).get(agent.id, 0),
        parent=parent,
        depth=(parent.depth + 1) if parent else 0,
        api_key=api_key,
        webhook_url=webhook_url or "",
    )
    if enqueue:
        execution_enqueue(execution_id=execution.id)
    return execution


def executions_create_many(*, runs: list[tuple[Any, str, Any]], trigger: str) -> list[Execution | None]:
    """`execution_create` for many runs at once (the schedule dispatcher), in a few queries whatever their number.

    `runs` are (user, agent_id, input). Each user's daily quota is taken for all of their runs in one
    go: a run beyond it gets None where `execution_create` would raise QUOTA_EXCEEDED (earlier runs
    in the list are served first). The executions are enqueued together once the transaction commits.
    """
    from accounts.quotas import quota_consume_many
    from workflows.selectors import workflow_versions_of

    if not runs:
        return []
    inputs = [validate_execution_input(input) for _user, _agent_id, input in runs]
    with transaction.atomic():
        granted = quota_consume_many(
            demands=Counter(user for user, _agent_id, _input in runs), limit_name="executions_per_day"
        )
        versions = workflow_versions_of(agent_ids={agent_id for _user, agent_id, _input in runs})
        result: list[Execution | None] = []
        for (user, agent_id, _input), input in zip(runs, inputs, strict=True):
            if granted.get(user.pk, 0) <= 0:
                result.append(None)
                continue
            granted[user.pk] -= 1
            result.append(
                Execution(
                    user=user,
                    agent_id=agent_id,
                    trigger=trigger,
                    input=input,
                    workflow_version=versions.get(agent_id, 0),
                )
            )
        created = Execution.objects.bulk_create([execution for execution in result if execution is not None])
        execution_ids = [execution.pk for execution in created]
        if execution_ids:
            transaction.on_commit(lambda: executions_enqueue_many(execution_ids=execution_ids))
    return result


def executions_enqueue_many(*, execution_ids: list[str]) -> None:
    """Enqueue committed executions (a lost message is re-enqueued by the reaper)."""
    for execution_id in execution_ids:
        _send_run(execution_id)


def _finish_without_running(execution: Execution, *, status: str, error: str = "") -> bool:
    """Move a pending execution straight to a final status; False if a worker claimed it first."""
    now = timezone.now()
    moved = Execution.objects.filter(pk=execution.pk, status=ExecutionStatus.PENDING).update(
        status=status, error=error, completed_at=now, duration_ms=0
    )
    if moved:
        EventRecorder(execution.pk).record(
            "execution_complete", {"status": status, "output": None, "error": error or None, "duration_ms": 0}
        )
        execution.refresh_from_db()
        webhook_schedule(execution)
    return bool(moved)


@transaction.atomic
def execution_cancel(*, execution: Execution) -> Execution:
    """Cancel a pending or running execution; one that already ended is a 409."""
    execution = Execution.objects.select_for_update().get(pk=execution.pk)
    if execution.status in FINISHED_STATUSES:
        raise ApplicationError("CONFLICT", f"The execution already ended ({execution.status}).")
    if execution.status == ExecutionStatus.PENDING:
        _finish_without_running(execution, status=ExecutionStatus.CANCELLED, error="Cancelled before it started.")
    else:
        # The worker running it watches this flag and stops the engine.
        execution.cancel_requested = True
        execution.save(update_fields=["cancel_requested"])
    execution.refresh_from_db()
    return execution


def executions_cancel_for_agent(*, user, agent_id: str) -> int:
    """Cancel every unfinished execution of an agent (the agent is being deleted)."""
    cancelled = 0
    unfinished = Execution.objects.filter(user=user, agent_id=agent_id).exclude(status__in=FINISHED_STATUSES)
    for execution in unfinished:
        try:
            execution_cancel(execution=execution)
            cancelled += 1
        except ApplicationError:
            pass  # it ended meanwhile
    return cancelled


def executions_reap_stale() -> dict[str, int]:
    """Recover from lost workers and lost queue messages, within bounded time.

    A running execution whose worker stopped heartbeating for EXECUTION_STALE_SECONDS is marked
    failed. A pending one older than EXECUTION_REQUEUE_SECONDS (its message may have been lost
    with a broker restart) is enqueued again: the claim makes a duplicate delivery harmless.
    """
    now = timezone.now()
    stale = Execution.objects.filter(
        status=ExecutionStatus.RUNNING, heartbeat_at__lt=now - timedelta(seconds=settings.EXECUTION_STALE_SECONDS)
    )
    failed = 0
    for execution in stale:
        moved = Execution.objects.filter(
            pk=execution.pk, status=ExecutionStatus.RUNNING, heartbeat_at=execution.heartbeat_at
        ).update(
            status=ExecutionStatus.FAILED,
            error="The worker running this execution stopped responding.",
            completed_at=now,
            duration_ms=int((now - (execution.started_at or now)).total_seconds() * 1000),
        )
        if moved:
            failed += 1
            execution.refresh_from_db()
            webhook_schedule(execution)
            EventRecorder(execution.pk).record(
                "execution_complete",
                {
                    "status": ExecutionStatus.FAILED,
                    "output": None,
                    "error": "The worker running this execution stopped responding.",
                    "duration_ms": None,
                },
            )
    requeued = 0
    cutoff = now - timedelta(seconds=settings.EXECUTION_REQUEUE_SECONDS)
    # A pending row's `heartbeat_at` records its last re-enqueue: during a long backlog each one is sent
    # again at most once per EXECUTION_REQUEUE_SECONDS, not on every run of the reaper.
    waiting = list(
        Execution.objects.filter(status=ExecutionStatus.PENDING, created_at__lt=cutoff)
        .filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=cutoff))
        .values_list("pk", flat=True)[:1000]
    )
    Execution.objects.filter(pk__in=waiting, status=ExecutionStatus.PENDING).update(heartbeat_at=now)
    for execution_id in waiting:
        execution_enqueue(execution_id=execution_id)
        requeued += 1
    if failed or requeued:
        logger.warning("reaper: %d stale execution(s) failed, %d pending re-enqueued", failed, requeued)
    return {"failed": failed, "requeued": requeued}


def executions_prune() -> int:
    """Delete executions (and their events) older than EXECUTION_RETENTION_DAYS."""
    cutoff = timezone.now() - timedelta(days=settings.EXECUTION_RETENTION_DAYS)
    deleted, _ = (
        Execution.objects.filter(created_at__lt=cutoff)
        .exclude(status__in=[ExecutionStatus.PENDING, ExecutionStatus.RUNNING])
        .delete()
    )
    return deleted
