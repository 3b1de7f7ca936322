from django.conf import settings
from django.db import models

from claraverse.ids import new_id


def new_provider_id() -> str:
    return new_id("prov")


class ProviderType(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    OLLAMA = "ollama", "Ollama"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible"


class ProviderSource(models.TextChoices):
    API = "api", "Created through the admin API"
    ENV = "env", "Declared by environment variables"


class Provider(models.Model):
    """An LLM provider endpoint; its API key is stored encrypted and never returned."""

    id = models.CharField(primary_key=True, max_length=40, default=new_provider_id, editable=False)
    name = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=32, choices=ProviderType.choices)
    base_url = models.URLField(max_length=500)
    enabled = models.BooleanField(default=True)
    api_key_encrypted = models.TextField(blank=True, default="")
    api_key_preview = models.CharField(max_length=32, blank=True, default="")
    source = models.CharField(max_length=8, choices=ProviderSource.choices, default=ProviderSource.API)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"


class LLMModel(models.Model):
    """A model offered to users; `id` is the public id chosen by the admin (may hold `/` and `:`)."""

    id = models.CharField(primary_key=True, max_length=200)
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=200, help_text="The model name sent to the provider.")
    display_name = models.CharField(max_length=200, blank=True, default="")
    context_length = models.PositiveIntegerField(default=8192)
    supports_tools = models.BooleanField(default=True)
    supports_streaming = models.BooleanField(default=True)
    supports_vision = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    last_connection_test = models.JSONField(null=True, blank=True)
    last_benchmark = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "LLM model"

    def __str__(self) -> str:
        return self.id


class UsageSource(models.TextChoices):
    CHAT = "chat", "Chat"
    WORKFLOW = "workflow", "Workflow"
    SYSTEM = "system", "System"


class UsageOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    ERROR = "error", "Error"
    CANCELLED = "cancelled", "Cancelled"


class LLMUsage(models.Model):
    """One LLM call, recorded for analytics (CONTRACT §11)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="llm_usage"
    )
    provider = models.ForeignKey(Provider, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage")
    provider_name = models.CharField(max_length=100)
    model_id = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=UsageSource.choices)
    outcome = models.CharField(max_length=16, choices=UsageOutcome.choices)
    error_code = models.CharField(max_length=64, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["model_id", "created_at"]),
            models.Index(fields=["provider", "created_at"]),
            models.Index(fields=["user", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} {self.outcome} at {self.created_at:%Y-%m-%d %H:%M}"


def new_credential_id() -> str:
    return new_id("cred")


class Credential(models.Model):
    """A user's credential for one integration; its fields are stored encrypted, never returned."""

    id = models.CharField(primary_key=True, max_length=40, default=new_credential_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credentials")
    integration_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    fields_encrypted = models.TextField()
    preview = models.CharField(max_length=64, blank=True, default="")
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_test = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "integration_id"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.integration_id})"
