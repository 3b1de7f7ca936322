from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Cross-cutting plumbing: errors, ids, rate limits, outbound guard, encryption, health."""

    name = "claraverse"
    label = "core"
    verbose_name = "ClaraVerse core"

    def ready(self) -> None:
        # Importing the helper registers its system check, so a malformed ENCRYPTION_KEYS stops
        # `manage.py check`/start-up instead of failing at the first secret written.
        from . import encryption  # noqa: F401
