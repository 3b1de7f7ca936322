"""Celery tasks of API keys: webhook deliveries with backoff, idempotency clean-up."""

from celery import shared_task
from django.conf import settings

from . import services


@shared_task(name="apikeys.deliver_webhook", acks_late=True, ignore_result=True)
def deliver_webhook(execution_id: str, attempt: int = 1) -> None:
    """One delivery attempt; a failed one schedules the next with exponential backoff."""
    delivered = services.webhook_deliver(execution_id=execution_id, attempt=attempt)
    if not delivered and attempt < settings.WEBHOOK_MAX_ATTEMPTS:
        deliver_webhook.apply_async((execution_id, attempt + 1), countdown=services.webhook_retry_delay(attempt))


@shared_task(name="apikeys.requeue_lost_webhooks", ignore_result=True)
def requeue_lost_webhooks() -> int:
    """Enqueue callbacks whose first attempt was never sent (the broker was down when their execution ended)."""
    return services.webhooks_requeue_lost()


@shared_task(name="apikeys.prune_idempotency", ignore_result=True)
def prune_idempotency_records() -> int:
    """Forget idempotency answers past their 24 h window."""
    return services.idempotency_records_prune()
