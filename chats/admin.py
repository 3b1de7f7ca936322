"""Operator admin for chats: metadata only; titles and messages stay encrypted and unseen."""

from django.contrib import admin

from .models import Chat


@admin.register(Chat)
class ChatAdmin(admin.ModelAdmin):
    list_display = ["chat_id", "user", "model", "version", "updated_at"]
    search_fields = ["chat_id", "user__email"]
    exclude = ["title_encrypted", "messages_encrypted"]
    readonly_fields = ["user", "chat_id", "model", "version", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False
