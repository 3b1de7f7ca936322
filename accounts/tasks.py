"""Periodic account housekeeping."""

from celery import shared_task

from . import services


@shared_task(name="accounts.prune_expired_tokens", ignore_result=True)
def prune_expired_tokens() -> int:
    """Delete refresh-token records past their lifetime (they can no longer be used anyway)."""
    return services.expired_tokens_prune()
