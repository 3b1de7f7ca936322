"""Celery tasks of executions: run one, reap stale ones, prune old ones, dispatch due schedules."""

import time
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from . import services
from .run import execute_execution


@shared_task(name="executions.run", acks_late=True, ignore_result=True)
def run_execution(execution_id: str) -> None:
    """Run a pending execution; a duplicate delivery finds it claimed and does nothing."""
    execute_execution(execution_id=execution_id)


@shared_task(name="executions.reap_stale", ignore_result=True)
def reap_stale_executions() -> dict:
    """Fail executions whose worker died; re-enqueue pending ones whose message was lost."""
    return services.executions_reap_stale()


@shared_task(name="executions.prune", ignore_result=True)
def prune_old_executions() -> int:
    """Delete executions past EXECUTION_RETENTION_DAYS."""
    return services.executions_prune()


@shared_task(name="executions.dispatch_due_schedules", ignore_result=True)
def dispatch_due_schedules(wake_at: str | None = None) -> dict:
    """Start every schedule firing due by now, once: sent by beat every SCHEDULE_DISPATCH_INTERVAL_SECONDS.

    A firing due before beat's next tick gets a wake-up (this task with an ETA at its time, `wake_at`),
    so that it starts on time rather than up to one interval late. Wake-ups send no further wake-ups.
    """
    from .schedules import schedules_dispatch_due, schedules_next_due_at

    if wake_at:
        # Never before the firing time, should the worker's timer fire a little early.
        early = (datetime.fromisoformat(wake_at) - timezone.now()).total_seconds()
        if 0 < early < 1:
            time.sleep(early)
        return schedules_dispatch_due()
    counts = schedules_dispatch_due()
    next_due = schedules_next_due_at()
    if next_due and next_due < timezone.now() + timedelta(seconds=settings.SCHEDULE_DISPATCH_INTERVAL_SECONDS):
        dispatch_due_schedules.apply_async(kwargs={"wake_at": next_due.isoformat()}, eta=next_due)
    return counts
