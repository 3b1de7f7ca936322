from django.apps import AppConfig


class AdminpanelConfig(AppConfig):
    """The /api/admin API: users, overrides, analytics, providers and models."""

    name = "adminpanel"
