from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Users, JWT authentication, quotas and usage counters."""

    name = "accounts"
