"""Operator admin for users: search, filters, and deactivation that also ends sessions."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from . import services
from .models import DailyUsage, QuotaOverride, User


class UserChangeAdminForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


class UserCreationAdminForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "name")


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Users by email; the password is only ever shown as its hash summary."""

    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    ordering = ["-created_at"]
    list_display = ["email", "name", "role", "tier", "is_active", "created_at", "last_login"]
    list_filter = ["role", "tier", "is_active", "is_staff"]
    search_fields = ["email", "name", "id"]
    readonly_fields = ["id", "created_at", "updated_at", "last_login"]
    fieldsets = [
        (None, {"fields": ["id", "email", "password"]}),
        ("Profile", {"fields": ["name", "role", "tier", "preferences"]}),
        ("Access", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["created_at", "updated_at", "last_login"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "name", "password1", "password2"]})]
    actions = ["deactivate_users", "reactivate_users"]

    @admin.action(description="Deactivate (revoke tokens, close sockets)")
    def deactivate_users(self, request, queryset):
        for user in queryset:
            services.user_deactivate(user=user)
        self.message_user(request, f"{queryset.count()} user(s) deactivated.", messages.SUCCESS)

    @admin.action(description="Reactivate")
    def reactivate_users(self, request, queryset):
        for user in queryset:
            services.user_reactivate(user=user)
        self.message_user(request, f"{queryset.count()} user(s) reactivated.", messages.SUCCESS)


@admin.register(QuotaOverride)
class QuotaOverrideAdmin(admin.ModelAdmin):
    list_display = ["user", "messages_per_day", "executions_per_day", "storage_mb", "updated_at"]
    search_fields = ["user__email", "user__id"]


@admin.register(DailyUsage)
class DailyUsageAdmin(admin.ModelAdmin):
    list_display = ["user", "day", "messages", "executions"]
    list_filter = ["day"]
    search_fields = ["user__email"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
