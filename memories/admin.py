"""Operator admin for memories: metadata only; the content stays encrypted and unseen."""

from django.contrib import admin

from .models import Memory


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "category", "importance", "archived", "access_count", "updated_at"]
    list_filter = ["category", "importance", "archived"]
    search_fields = ["id", "user__email"]
    exclude = ["content_encrypted"]
    readonly_fields = [
        "id",
        "user",
        "category",
        "importance",
        "archived",
        "archived_at",
        "access_count",
        "last_accessed_at",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request):
        return False
