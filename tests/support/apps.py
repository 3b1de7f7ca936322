from django.apps import AppConfig


class SupportConfig(AppConfig):
    """Test-only models (installed by claraverse.settings.test alone)."""

    name = "tests.support"
    label = "test_support"
