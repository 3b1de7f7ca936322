"""Test-only models exercising shared machinery before real apps use it."""

from django.db import models


class SecretNote(models.Model):
    """A row with one encrypted column, owned by `owner_id`; registered for rotation by the tests only."""

    owner_id = models.CharField(max_length=64)
    secret = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"SecretNote {self.pk}"
