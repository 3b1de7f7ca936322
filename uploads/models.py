from django.conf import settings
from django.db import models
from django.utils import timezone

from claraverse.ids import new_id


def new_file_id() -> str:
    return new_id("file")


class Upload(models.Model):
    """An uploaded file: stored under a server-chosen name, typed from its bytes, expiring."""

    id = models.CharField(primary_key=True, max_length=40, default=new_file_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    filename = models.CharField(max_length=255, help_text="The client's name, cleaned for display only.")
    storage_name = models.CharField(max_length=255, unique=True, help_text="Server-chosen path under UPLOAD_ROOT.")
    mime_type = models.CharField(max_length=100)
    extension = models.CharField(max_length=16)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    text = models.TextField(blank=True, default="", help_text="Extracted text, for read_document.")
    source = models.CharField(max_length=16, default="web", help_text="web (JWT) or external (API key).")
    expires_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.id} ({self.filename})"

    @property
    def is_expired(self) -> bool:
        """Whether the upload is past its expiry (it may still await the clean-up task)."""
        return self.expires_at <= timezone.now()

    @property
    def status(self) -> str:
        """`ready` or `expired` (CONTRACT §10)."""
        return "expired" if self.is_expired else "ready"

    @property
    def url_path(self) -> str:
        """Where the owner downloads the file."""
        return f"/uploads/{self.id}.{self.extension}"
