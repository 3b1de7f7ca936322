"""Reads of uploads, always scoped to their owner."""

from django.db.models import Sum
from django.utils import timezone

from claraverse.errors import ApplicationError

from .models import Upload


def upload_get(*, user, file_id: str) -> Upload:
    """The user's upload, expired or not, or a 404 (also for another user's upload)."""
    upload = Upload.objects.filter(pk=file_id, user=user).first()
    if upload is None:
        raise ApplicationError("NOT_FOUND", "Upload not found.")
    return upload


def upload_get_servable(*, user, file_id: str, extension: str) -> Upload:
    """The user's live upload at `/uploads/<file_id>.<extension>`, or a 404 (expired, other extension or user)."""
    upload = Upload.objects.filter(pk=file_id, user=user, extension=extension, expires_at__gt=timezone.now()).first()
    if upload is None:
        raise ApplicationError("NOT_FOUND", "File not found.")
    return upload


def storage_used_bytes(user) -> int:
    """Bytes of the user's live uploads, what a storage quota counts (expired files are on their way out)."""
    used = Upload.objects.filter(user=user, expires_at__gt=timezone.now()).aggregate(total=Sum("size"))["total"]
    return int(used or 0)
