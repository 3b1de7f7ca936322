"""Operator admin for uploads: metadata only, never the file bytes; deleting also removes the file."""

from django.contrib import admin

from . import services
from .models import Upload


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ["id", "filename", "user", "mime_type", "size", "source", "expires_at", "created_at"]
    list_filter = ["mime_type", "source", "created_at", "expires_at"]
    search_fields = ["id", "filename", "user__email", "sha256"]
    date_hierarchy = "created_at"
    # The extracted text can be a megabyte of a user's document: its length is enough here.
    exclude = ["text"]
    readonly_fields = [
        "id",
        "user",
        "filename",
        "storage_name",
        "mime_type",
        "extension",
        "size",
        "sha256",
        "text_length",
        "source",
        "expires_at",
        "created_at",
    ]
    list_select_related = ["user"]

    @admin.display(description="extracted text (characters)")
    def text_length(self, obj: Upload) -> int:
        return len(obj.text)

    def has_add_permission(self, request):
        return False

    def delete_model(self, request, obj):
        services.upload_delete(upload=obj)

    def delete_queryset(self, request, queryset):
        for upload in queryset:
            services.upload_delete(upload=upload)
