"""Operator admin for providers, models and LLM usage; API keys are never shown."""

from django.contrib import admin

from .models import Credential, LLMModel, LLMUsage, Provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "type", "base_url", "enabled", "api_key_preview", "source", "created_at"]
    list_filter = ["type", "enabled", "source"]
    search_fields = ["name", "base_url", "id"]
    # The encrypted key is excluded: it is managed through the admin API, which encrypts it.
    exclude = ["api_key_encrypted"]
    readonly_fields = ["id", "api_key_preview", "source", "created_at", "updated_at"]


@admin.register(LLMModel)
class LLMModelAdmin(admin.ModelAdmin):
    list_display = ["id", "provider", "name", "context_length", "supports_tools", "enabled"]
    list_filter = ["enabled", "supports_tools", "supports_streaming", "supports_vision", "provider"]
    search_fields = ["id", "name", "display_name"]
    readonly_fields = ["last_connection_test", "last_benchmark", "created_at", "updated_at"]


@admin.register(LLMUsage)
class LLMUsageAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "user",
        "provider_name",
        "model_id",
        "source",
        "outcome",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
        "ttft_ms",
    ]
    list_filter = ["source", "outcome", "provider_name"]
    search_fields = ["model_id", "user__email"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin):
    list_display = ["name", "integration_id", "user", "preview", "last_used_at", "created_at"]
    list_filter = ["integration_id"]
    search_fields = ["id", "name", "user__email"]
    exclude = ["fields_encrypted"]
    readonly_fields = [
        "id",
        "user",
        "integration_id",
        "preview",
        "last_used_at",
        "last_test",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request):
        return False  # fields are validated and encrypted by the API
