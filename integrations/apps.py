from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    """Tools, integrations, credentials, LLM providers, models and the LLM client."""

    name = "integrations"

    def ready(self) -> None:
        from claraverse.encryption import register_encrypted_field

        from .provider_keys import OWNER, PURPOSE

        register_encrypted_field("integrations.Provider", "api_key_encrypted", purpose=PURPOSE, owner_id=OWNER)
        register_encrypted_field(
            "integrations.Credential", "fields_encrypted", purpose="credential", owner_attr="user_id"
        )
