from django.conf import settings
from django.db import models

from claraverse.ids import new_id


def new_memory_id() -> str:
    return new_id("mem")


class MemoryCategory(models.TextChoices):
    PREFERENCE = "preference", "Preference"
    FACT = "fact", "Fact"
    CONTEXT = "context", "Context"
    INSTRUCTION = "instruction", "Instruction"
    PERSONAL_INFO = "personal_info", "Personal info"


class MemoryImportance(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class Memory(models.Model):
    """Something the user wants remembered across chats (CONTRACT §9); the content is encrypted at rest."""

    id = models.CharField(primary_key=True, max_length=64, default=new_memory_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memories")
    content_encrypted = models.TextField()
    category = models.CharField(max_length=20, choices=MemoryCategory.choices, default=MemoryCategory.FACT)
    importance = models.CharField(max_length=10, choices=MemoryImportance.choices, default=MemoryImportance.MEDIUM)
    archived = models.BooleanField(default=False)
    archived_at = models.DateTimeField(null=True, blank=True)
    access_count = models.PositiveIntegerField(default=0)
    last_accessed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "archived", "-created_at"])]

    def __str__(self) -> str:
        return self.id
