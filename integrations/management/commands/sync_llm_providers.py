"""`manage.py sync_llm_providers`: create or update the providers declared by environment variables."""

from django.core.management.base import BaseCommand

from integrations.services import providers_sync_from_env


class Command(BaseCommand):
    help = "Create or update the LLM providers (and their listed models) declared in the environment."

    def handle(self, *args, **options):
        synced = providers_sync_from_env()
        for provider in synced:
            self.stdout.write(f"provider {provider.name} ({provider.type}) synced from the environment")
        if not synced:
            self.stdout.write("no providers declared in the environment")
