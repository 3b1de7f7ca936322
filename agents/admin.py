"""Operator admin for agents."""

from django.contrib import admin

from .models import Agent


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "model", "temperature", "updated_at"]
    list_filter = ["model"]
    search_fields = ["id", "name", "user__email"]
    readonly_fields = ["id", "created_at", "updated_at"]
