"""Provider API keys at rest: encrypted under one system-wide scope (they belong to no user)."""

from claraverse.encryption import decrypt, encrypt

OWNER = "system"
PURPOSE = "provider_api_key"


def encrypt_provider_key(api_key: str) -> str:
    """The stored form of a provider API key ("" for none)."""
    return encrypt(api_key, owner_id=OWNER, purpose=PURPOSE) if api_key else ""


def decrypt_provider_key(token: str) -> str:
    """The plaintext key of a stored token ("" for none); raises DecryptionError if unreadable."""
    return decrypt(token, owner_id=OWNER, purpose=PURPOSE) if token else ""
