"""Provider API keys (fixed `system` owner) are found and re-encrypted by key rotation."""

import base64
import os

import pytest
from django.core.management import call_command

from claraverse.encryption import current_key_id, token_key_id
from integrations.models import Provider
from integrations.provider_keys import decrypt_provider_key
from integrations.services import provider_create

pytestmark = pytest.mark.django_db


def fresh_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def test_rotation_reencrypts_provider_keys(settings):
    old = fresh_key()
    settings.ENCRYPTION_KEYS = [old]
    provider = provider_create(name="p", type="openai", api_key="sk-rotate-me-0123456789")
    old_id = token_key_id(provider.api_key_encrypted)

    settings.ENCRYPTION_KEYS = [fresh_key(), old]
    call_command("rotate_encryption_keys", verbosity=0)
    provider.refresh_from_db()
    assert token_key_id(provider.api_key_encrypted) == current_key_id() != old_id

    settings.ENCRYPTION_KEYS = settings.ENCRYPTION_KEYS[:1]
    assert decrypt_provider_key(Provider.objects.get().api_key_encrypted) == "sk-rotate-me-0123456789"
