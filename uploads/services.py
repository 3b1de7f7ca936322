"""Upload writes: create (sniff, extract, store), delete, and the clean-up of expired uploads."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.core.files import File
from django.db import transaction
from django.utils import timezone

from claraverse.errors import ApplicationError

from . import storage
from .conf import upload_max_bytes, upload_text_max_chars, upload_ttl_hours
from .extraction import extract_text
from .models import Upload
from .parsers import too_large
from .sniffing import ALLOWED_MIME_TYPES, UnsupportedFileType, detect_type

logger = logging.getLogger("claraverse.uploads")

CLEANUP_BATCH_SIZE = 500
UNSUPPORTED_MESSAGE = (
    "This file type is not allowed. Upload an image (PNG, JPEG, GIF, WebP), a PDF, a Word document (DOCX) "
    "or UTF-8 text (plain, Markdown, CSV, JSON)."
)


def upload_create(*, user, uploaded_file: File, source: str = "web") -> Upload:
    """Store a file for `user` (`source`: `web` or `external`); 413 over UPLOAD_MAX_BYTES, 415 for other types."""
    # The stored name is server-chosen; the client's name is only kept, cleaned, for display.
    max_bytes = upload_max_bytes()
    if uploaded_file.size is not None and uploaded_file.size > max_bytes:
        raise too_large(max_bytes)
    raw_name = uploaded_file.name or ""
    try:
        detected = detect_type(uploaded_file, client_name=storage.display_filename(raw_name, fallback_extension="bin"))
    except UnsupportedFileType as exc:
        logger.info("upload refused: content looks like %s", exc.detected or "an unknown binary type")
        raise ApplicationError(
            "UNSUPPORTED_MEDIA_TYPE", UNSUPPORTED_MESSAGE, details={"allowed": list(ALLOWED_MIME_TYPES)}
        ) from None
    from accounts.quotas import quota_check_storage

    from .selectors import storage_used_bytes

    quota_check_storage(user=user, used_bytes=storage_used_bytes(user=user), adding_bytes=uploaded_file.size or 0)
    text = extract_text(uploaded_file, detected, max_chars=upload_text_max_chars())
    now = timezone.now()
    try:
        stored = storage.save(uploaded_file, storage.new_storage_name(detected.extension, now), max_bytes=max_bytes)
    except storage.FileTooLarge:
        raise too_large(max_bytes) from None
    try:
        with transaction.atomic():
            return Upload.objects.create(
                user=user,
                filename=storage.display_filename(raw_name, fallback_extension=detected.extension),
                storage_name=stored.storage_name,
                mime_type=detected.mime_type,
                extension=detected.extension,
                size=stored.size,
                sha256=stored.sha256,
                text=text,
                source=source,
                expires_at=now + timedelta(hours=upload_ttl_hours()),
            )
    except BaseException:
        storage.delete(stored.storage_name)
        raise


@transaction.atomic
def upload_delete(*, upload: Upload) -> None:
    """Delete an upload; its file goes once the deletion is committed."""
    storage_name = upload.storage_name
    upload.delete()
    transaction.on_commit(lambda: storage.delete(storage_name))


def uploads_cleanup_expired(*, now: datetime | None = None, batch_size: int = CLEANUP_BATCH_SIZE) -> int:
    """Delete expired uploads and their files; answers how many rows went."""
    # Files go first and a row whose file could not be removed stays for the next run, so no file is ever
    # left without a row pointing at it. Two runs at once only race to delete the same things: harmless.
    now = now or timezone.now()
    deleted = 0
    failed: set[str] = set()
    while True:
        batch = list(
            Upload.objects.filter(expires_at__lte=now)
            .exclude(pk__in=failed)
            .order_by("expires_at", "id")
            .values_list("id", "storage_name")[:batch_size]
        )
        if not batch:
            return deleted
        removed = []
        for upload_id, storage_name in batch:
            if storage.delete(storage_name):
                removed.append(upload_id)
            else:
                failed.add(upload_id)
        with transaction.atomic():
            deleted += Upload.objects.filter(pk__in=removed, expires_at__lte=now).delete()[1].get("uploads.Upload", 0)
