from django.apps import AppConfig


class ApikeysConfig(AppConfig):
    """API keys, X-API-Key authentication, external triggers and webhook deliveries."""

    name = "apikeys"
