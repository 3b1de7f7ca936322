from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Cross-cutting plumbing: errors, ids, rate limits, outbound guard, encryption, health."""

    name = "claraverse"
    label = "core"
    verbose_name = "ClaraVerse core"
