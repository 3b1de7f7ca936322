"""Periodic upload housekeeping."""

from celery import shared_task

from . import services


@shared_task(name="uploads.cleanup_expired", ignore_result=True)
def cleanup_expired() -> int:
    """Delete expired uploads and their files."""
    return services.uploads_cleanup_expired()
