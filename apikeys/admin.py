"""Operator admin for API keys (hash and secret never shown) and webhook deliveries."""

from django.contrib import admin, messages

from . import services
from .models import ApiKey, IdempotentTrigger, WebhookDelivery


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "user", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["id", "name", "prefix", "user__email"]
    exclude = ["key_hash", "webhook_secret_encrypted"]
    readonly_fields = ["id", "user", "prefix", "scopes", "agent_ids", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_keys"]

    def has_add_permission(self, request):
        return False  # keys are created through the API, which shows the key once

    @admin.action(description="Revoke")
    def revoke_keys(self, request, queryset):
        for key in queryset:
            services.key_revoke(key=key)
        self.message_user(request, f"{queryset.count()} key(s) revoked.", messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["execution", "attempt", "status_code", "error", "delivered_at"]
    search_fields = ["execution__id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(IdempotentTrigger)
class IdempotentTriggerAdmin(admin.ModelAdmin):
    list_display = ["api_key", "idempotency_key", "agent_id", "created_at"]
    search_fields = ["idempotency_key", "agent_id"]

    def has_add_permission(self, request):
        return False
