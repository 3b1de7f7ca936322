"""Permission classes shared by every app."""

from rest_framework.permissions import BasePermission


class IsAdmin(BasePermission):
    """Role `admin` or listed in SUPERADMIN_USER_IDS (CONTRACT §11); others get 403 FORBIDDEN."""

    message = "Administrator access is required."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_admin)
