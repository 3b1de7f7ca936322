"""Running one execution in a worker: claim it exactly once, run the engine, record events and the result."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from apikeys.services import webhook_schedule
from workflows.engine import CancelToken, EngineLimits, GraphError, WorkflowEngine

from .events import EventRecorder
from .models import Execution, ExecutionStatus
from .runners import SIDE_EFFECT_RUNNERS, RunContext

logger = logging.getLogger("claraverse.executions")


def _close_thread_connections() -> None:
    # Engine worker threads touch the database in runners; their connections must not outlive them.
    connection.close()


class _Watch:
    """Polled by the engine between steps: heartbeats the row and notices a requested cancellation."""

    def __init__(self, execution_id: str):
        self.execution_id = execution_id
        self.last_heartbeat = time.monotonic()

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last_heartbeat >= settings.EXECUTION_HEARTBEAT_SECONDS:
            Execution.objects.filter(pk=self.execution_id, status=ExecutionStatus.RUNNING).update(
                heartbeat_at=timezone.now()
            )
            self.last_heartbeat = now
        return Execution.objects.filter(pk=self.execution_id, cancel_requested=True).exists()


def _finish(
    execution: Execution,
    recorder: EventRecorder,
    *,
    status: str,
    output,
    error: str | None,
    duration_ms: int,
    node_results: list,
) -> Execution:
    recorder.flush()  # every node event is stored before the row says the execution ended
    execution.status = status
    execution.output = output
    execution.error = error or ""
    execution.duration_ms = duration_ms
    execution.node_results = node_results
    execution.completed_at = timezone.now()
    execution.save(update_fields=["status", "output", "error", "duration_ms", "node_results", "completed_at"])
    recorder.record(
        "execution_complete", {"status": status, "output": output, "error": error, "duration_ms": duration_ms}
    )
    recorder.flush()  # stored before the task returns: a replay after the end always has the end
    webhook_schedule(execution)
    return execution


def execute_execution(*, execution_id: str, cancel_token: CancelToken | None = None) -> Execution | None:
    """Claim a pending execution and run it to the end; None if someone else already claimed it."""
    close_old_connections()
    now = timezone.now()
    claimed = Execution.objects.filter(pk=execution_id, status=ExecutionStatus.PENDING).update(
        status=ExecutionStatus.RUNNING, started_at=now, heartbeat_at=now
    )
    if not claimed:
        return None
    execution = Execution.objects.select_related("user").get(pk=execution_id)
    recorder = EventRecorder(execution_id, background=True)
    began = time.monotonic()
    try:
        from agents.models import Agent
        from workflows.selectors import workflow_graph_at

        agent = Agent.objects.filter(pk=execution.agent_id, user=execution.user).first()
        if agent is None:
            return _finish(
                execution,
                recorder,
                status=ExecutionStatus.FAILED,
                output=None,
                error="The agent was deleted.",
                duration_ms=0,
                node_results=[],
            )
        nodes, edges = workflow_graph_at(agent=agent, version=execution.workflow_version)
        engine = WorkflowEngine(
            runners=SIDE_EFFECT_RUNNERS,
            limits=EngineLimits.from_settings(settings),
            thread_cleanup=_close_thread_connections,
            cancel_check=_Watch(execution_id),
            cancel_check_interval=0.5,
        )

        def emit(event: dict) -> None:
            # The final event is recorded by _finish, after the row holds the result.
            if event["type"] != "execution_complete":
                recorder.record(event.pop("type"), event)

        result = engine.run(
            nodes,
            edges,
            execution.input,
            emit=emit,
            cancel_token=cancel_token,
            context=RunContext(user=execution.user, execution=execution),
        )
        return _finish(
            execution,
            recorder,
            status=result.status,
            output=result.output,
            error=result.error,
            duration_ms=result.duration_ms,
            node_results=result.node_results,
        )
    except GraphError as exc:
        return _finish(
            execution,
            recorder,
            status=ExecutionStatus.FAILED,
            output=None,
            error=f"The workflow cannot run: {exc}",
            duration_ms=int((time.monotonic() - began) * 1000),
            node_results=[],
        )
    except Exception:
        logger.exception("execution %s crashed", execution_id)
        return _finish(
            execution,
            recorder,
            status=ExecutionStatus.FAILED,
            output=None,
            error="Internal error while running the workflow.",
            duration_ms=int((time.monotonic() - began) * 1000),
            node_results=[],
        )
