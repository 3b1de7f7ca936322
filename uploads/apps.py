from django.apps import AppConfig


class UploadsConfig(AppConfig):
    """Uploaded files and their expiry."""

    name = "uploads"
