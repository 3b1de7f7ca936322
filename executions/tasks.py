"""Celery tasks of executions: run one, reap stale ones, prune old ones."""

from celery import shared_task

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


@shared_task(name="executions.fire_schedule", acks_late=True, ignore_result=True)
def fire_schedule(schedule_id: str) -> None:
    """Sent by beat at each cron time; the firing runs at most once whoever sends it."""
    from .schedules import schedule_fire

    schedule_fire(schedule_id=schedule_id)
