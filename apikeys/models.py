from django.conf import settings
from django.db import models

from claraverse.ids import new_id


def new_key_id() -> str:
    return new_id("key")


class ApiKey(models.Model):
    """An API key for external systems; only its SHA-256 hash and a display prefix are stored."""

    id = models.CharField(primary_key=True, max_length=40, default=new_key_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=24)
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    agent_ids = models.JSONField(default=list, blank=True, help_text="Empty: every agent of the owner.")
    webhook_secret_encrypted = models.TextField()
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class IdempotentTrigger(models.Model):
    """The first answer to a trigger sent with an `Idempotency-Key`, replayed to retries for 24 h."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="idempotent_triggers")
    idempotency_key = models.CharField(max_length=255)
    agent_id = models.CharField(max_length=64)
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "idempotency_key"], name="apikeys_idempotency_unique")
        ]

    def __str__(self) -> str:
        return f"{self.api_key_id}:{self.idempotency_key}"


class WebhookDelivery(models.Model):
    """One attempt to deliver an execution's callback to its `webhook_url`."""

    execution = models.ForeignKey("executions.Execution", on_delete=models.CASCADE, related_name="webhook_deliveries")
    attempt = models.PositiveSmallIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["execution", "attempt"]
        constraints = [models.UniqueConstraint(fields=["execution", "attempt"], name="apikeys_delivery_attempt_unique")]

    def __str__(self) -> str:
        return f"{self.execution_id} attempt {self.attempt}"
