"""Running one execution in a worker: claim it exactly once, run the engine, record events and the result."""

from __future__ import annotations

import contextlib
import logging
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
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
        self.database_down = False

    def __call__(self) -> bool:
        now = time.monotonic()
        try:
            if now - self.last_heartbeat >= settings.EXECUTION_HEARTBEAT_SECONDS:
                running = Execution.objects.filter(pk=self.execution_id, status=ExecutionStatus.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
                self.last_heartbeat = now
                if not running:
                    # The reaper ended it while this worker could not heartbeat (a database outage): stop the run.
                    logger.warning("execution %s was ended by the reaper; stopping its run", self.execution_id)
                    return True
            cancel = Execution.objects.filter(pk=self.execution_id, cancel_requested=True).exists()
        except DatabaseError:
            # A database restart cut this thread's connection: drop it, so that a later poll (and the final save)
            # gets a fresh one from the pool once the database is back; the run goes on meanwhile.
            _drop_connection()
            if not self.database_down:
                logger.warning("execution %s cannot reach the database; running on", self.execution_id, exc_info=True)
            self.database_down = True
            return False
        self.database_down = False
        return cancel


def _drop_connection() -> None:
    """Close this thread's database connection (a broken pooled one is discarded by the pool)."""
    with contextlib.suppress(Exception):
        connection.close()


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
    ended = Execution.objects.filter(pk=execution.pk, status=ExecutionStatus.RUNNING).update(
        status=status,
        output=output,
        error=execution.error,
        duration_ms=duration_ms,
        node_results=node_results,
        completed_at=execution.completed_at,
    )
    if not ended:
        # The reaper already ended it (no heartbeat for EXECUTION_STALE_SECONDS): the first ending stands, and was
        # the one announced (event, webhook).
        logger.warning("execution %s ended elsewhere before its run finished (%s)", execution.pk, status)
        execution.refresh_from_db()
        return execution
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
    recorder = EventRecorder(execution_id, background=True, fresh=True)
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
        _drop_connection()  # a broken connection (database restart) must not fail the recording of the failure too
        return _finish(
            execution,
            recorder,
            status=ExecutionStatus.FAILED,
            output=None,
            error="Internal error while running the workflow.",
            duration_ms=int((time.monotonic() - began) * 1000),
            node_results=[],
        )
