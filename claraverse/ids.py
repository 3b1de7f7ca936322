"""Opaque, prefixed identifiers (CONTRACT §1): `user_`, `agent_`, ... plus random characters."""

import re
import secrets

ID_RANDOM_BYTES = 16  # 16 bytes -> 22 URL-safe characters, above the contract's minimum of 16
ID_PATTERN = re.compile(r"^[a-z]+_[A-Za-z0-9_-]{16,}$")


def new_id(prefix: str) -> str:
    """Return a fresh id such as `agent_3kJ9...` for the given prefix (without underscore)."""
    return f"{prefix}_{secrets.token_urlsafe(ID_RANDOM_BYTES)}"


def has_prefix(value: object, prefix: str) -> bool:
    """Whether `value` is a well-formed id of the given type."""
    return isinstance(value, str) and value.startswith(f"{prefix}_") and bool(ID_PATTERN.match(value))
