"""Operator admin for workflows and their versions (graphs are edited through the API, which validates)."""

from django.contrib import admin

from .models import Workflow, WorkflowVersion


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["id", "agent", "version", "updated_at"]
    search_fields = ["id", "agent__id", "agent__name", "agent__user__email"]
    readonly_fields = ["id", "agent", "nodes", "edges", "version", "updated_at"]

    def has_add_permission(self, request):
        return False


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(admin.ModelAdmin):
    list_display = ["workflow", "version", "description", "created_at"]
    search_fields = ["workflow__id", "workflow__agent__id"]
    readonly_fields = ["workflow", "version", "nodes", "edges", "description", "created_at"]

    def has_add_permission(self, request):
        return False
