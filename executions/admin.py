"""Operator admin for executions and schedules, with cancel and disable actions."""

from django.contrib import admin, messages

from claraverse.errors import ApplicationError

from . import schedules, services
from .models import Execution, ExecutionEvent, Schedule, ScheduleFiring


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "agent_id", "status", "trigger", "duration_ms", "created_at"]
    list_filter = ["status", "trigger"]
    search_fields = ["id", "agent_id", "user__email"]
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in Execution._meta.fields]
    actions = ["cancel_executions"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel (pending or running)")
    def cancel_executions(self, request, queryset):
        cancelled = 0
        for execution in queryset:
            try:
                services.execution_cancel(execution=execution)
                cancelled += 1
            except ApplicationError:
                pass  # already ended
        self.message_user(request, f"{cancelled} execution(s) cancelled.", messages.SUCCESS)


@admin.register(ExecutionEvent)
class ExecutionEventAdmin(admin.ModelAdmin):
    list_display = ["execution", "seq", "type", "created_at"]
    list_filter = ["type"]
    search_fields = ["execution__id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = ["id", "agent", "user", "cron", "timezone", "enabled", "next_run_at", "last_run_at"]
    list_filter = ["enabled", "timezone"]
    search_fields = ["id", "agent__id", "agent__name", "user__email"]
    readonly_fields = ["id", "agent", "user", "next_run_at", "last_run_at", "created_at", "updated_at"]
    actions = ["disable_schedules", "enable_schedules"]

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        # Through the service, so that next_run_at follows the edit.
        fields = {name: form.cleaned_data[name] for name in ("cron", "enabled", "input") if name in form.changed_data}
        if "timezone" in form.changed_data:
            fields["timezone"] = str(form.cleaned_data["timezone"])
        schedules.schedule_update(schedule=Schedule.objects.get(pk=obj.pk), fields=fields)

    def delete_model(self, request, obj):
        schedules.schedule_delete(schedule=obj)

    @admin.action(description="Disable")
    def disable_schedules(self, request, queryset):
        for schedule in queryset:
            schedules.schedule_update(schedule=schedule, fields={"enabled": False})
        self.message_user(request, f"{queryset.count()} schedule(s) disabled.", messages.SUCCESS)

    @admin.action(description="Enable")
    def enable_schedules(self, request, queryset):
        for schedule in queryset:
            schedules.schedule_update(schedule=schedule, fields={"enabled": True})
        self.message_user(request, f"{queryset.count()} schedule(s) enabled.", messages.SUCCESS)


@admin.register(ScheduleFiring)
class ScheduleFiringAdmin(admin.ModelAdmin):
    list_display = ["schedule", "fire_time", "execution", "created_at"]
    search_fields = ["schedule__id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
