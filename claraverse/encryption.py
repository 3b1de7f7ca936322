"""Encryption of secrets at rest (CONTRACT §8, §9): provider keys, credentials, memories, chats.

Tokens look like `v1.<key_id>.<urlsafe-b64(nonce + ciphertext + tag)>`:

- `v1`: AES-256-GCM with a 96-bit random nonce, under a key derived with HKDF-SHA256 from a
  master key and the (purpose, owner id) scope; the same scope and the token header are also the
  associated data, so a token copied to another owner's row, another column or another key id
  fails to decrypt.
- `key_id`: 8 hex characters fingerprinting the master key (not the key itself), so decryption
  picks the right key from `settings.ENCRYPTION_KEYS` (newest first).

Rotation: put a new key first in `ENCRYPTION_KEYS`; new writes use it, old tokens still decrypt,
and `manage.py rotate_encryption_keys` re-encrypts every registered field so the old key can then
be removed. Apps register their encrypted columns with `register_encrypted_field` in
`AppConfig.ready()`; the column must hold the token exactly as `encrypt` returned it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import threading
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import router, transaction

FORMAT_VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_ID_LENGTH = 8
# Domain separation: the same master key bytes must never yield the same output for two uses.
_KEY_ID_LABEL = b"claraverse.encryption.key-id"
_CONTEXT_LABEL = b"claraverse.encryption.v1"

_URLSAFE_KEY = re.compile(r"^[A-Za-z0-9_-]{43}=?$")
_TOKEN = re.compile(r"^v1\.(?P<key_id>[0-9a-f]{8})\.(?P<payload>[A-Za-z0-9_-]+)$")


class DecryptionError(Exception):
    """A token could not be decrypted: bad format, unknown key id, tampering, wrong owner or purpose."""


# --- Keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Keyring:
    newest_id: str
    by_id: dict[str, bytes]


def _key_id(key: bytes) -> str:
    return hashlib.sha256(_KEY_ID_LABEL + b"\x00" + key).hexdigest()[:KEY_ID_LENGTH]


def _decode_master_key(position: int, raw: str) -> bytes:
    # Messages name the position and the problem only: a key must never reach a log or a traceback.
    name = f"ENCRYPTION_KEYS[{position}]"
    value = raw.strip()
    if not value:
        raise ImproperlyConfigured(f"{name} is empty (check for a stray comma in ENCRYPTION_KEYS).")
    hint = "expected the urlsafe base64 of 32 random bytes, e.g. base64.urlsafe_b64encode(os.urandom(32))"
    if "+" in value or "/" in value:
        raise ImproperlyConfigured(f"{name} uses the standard base64 alphabet ('+' or '/'); {hint}.")
    if not _URLSAFE_KEY.match(value):
        raise ImproperlyConfigured(f"{name} is not valid ({len(value)} characters); {hint} (44 characters).")
    try:
        key = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(f"{name} is not valid base64; {hint}.")
    return key  # 43 characters of base64 are exactly 32 bytes, so the pattern has fixed the length


@lru_cache(maxsize=8)
def _build_keyring(raw_keys: tuple[str, ...]) -> _Keyring:
    if not raw_keys:
        raise ImproperlyConfigured("ENCRYPTION_KEYS is empty; configure at least one key (newest first).")
    by_id: dict[str, bytes] = {}
    for position, raw in enumerate(raw_keys):
        key = _decode_master_key(position, raw)
        key_id = _key_id(key)
        if key_id in by_id:
            if by_id[key_id] == key:
                raise ImproperlyConfigured(f"ENCRYPTION_KEYS[{position}] repeats an earlier key; list each key once.")
            raise ImproperlyConfigured(
                f"ENCRYPTION_KEYS[{position}] has the same key id as an earlier key; generate a new key."
            )
        by_id[key_id] = key
    return _Keyring(newest_id=next(iter(by_id)), by_id=by_id)


def _keyring() -> _Keyring:
    # Read at call time so that override_settings and a changed environment take effect.
    raw = getattr(settings, "ENCRYPTION_KEYS", None)
    if not isinstance(raw, list | tuple):
        raise ImproperlyConfigured(f"ENCRYPTION_KEYS must be a list of keys (newest first), not {type(raw).__name__}.")
    for position, key in enumerate(raw):
        if not isinstance(key, str):
            raise ImproperlyConfigured(f"ENCRYPTION_KEYS[{position}] must be a string, not {type(key).__name__}.")
    return _build_keyring(tuple(raw))


def validate_encryption_keys() -> None:
    """Raise ImproperlyConfigured if `settings.ENCRYPTION_KEYS` is missing, empty or holds an invalid key."""
    _keyring()


def current_key_id() -> str:
    """The key id of the newest master key, the one every new token is written with."""
    return _keyring().newest_id


@checks.register(checks.Tags.security)
def check_encryption_keys(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """System check: report an invalid `ENCRYPTION_KEYS` at start-up rather than on first use."""
    try:
        validate_encryption_keys()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="claraverse.E001")]
    return []


# --- Tokens ----------------------------------------------------------------------------------


def _context(owner_id: str, purpose: str) -> bytes:
    # Length-prefixed so that no two (purpose, owner) pairs encode alike, whatever characters they hold.
    if not isinstance(owner_id, str) or not isinstance(purpose, str):
        raise TypeError("owner_id and purpose must be strings.")
    if not owner_id or not purpose:
        raise ValueError("owner_id and purpose must not be empty (use a fixed scope such as 'system' for globals).")
    parts = [_CONTEXT_LABEL]
    for part in (purpose.encode(), owner_id.encode()):
        parts.append(len(part).to_bytes(4, "big") + part)
    return b"".join(parts)


def _derive(master_key: bytes, context: bytes) -> AESGCM:
    # One key per owner and purpose keeps each key's message count far below GCM's random-nonce limit
    # and means a leaked derived key exposes one user's secrets of one kind, not everything.
    derived = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=context).derive(master_key)
    return AESGCM(derived)


def _associated_data(key_id: str, context: bytes) -> bytes:
    return f"{FORMAT_VERSION}.{key_id}".encode() + b"\x00" + context


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _parse(token: object) -> tuple[str, bytes]:
    match = _TOKEN.match(token) if isinstance(token, str) else None
    if match is None:
        raise DecryptionError("Encrypted value is malformed.")
    payload = match["payload"]
    try:
        blob = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError):
        raise DecryptionError("Encrypted value is malformed.")
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("Encrypted value is malformed.")
    return match["key_id"], blob


def encrypt(plaintext: str, *, owner_id: str, purpose: str) -> str:
    """Encrypt `plaintext` for one owner and purpose under the newest master key; returns an ASCII token."""
    if not isinstance(plaintext, str):
        raise TypeError("plaintext must be a string.")
    context = _context(owner_id, purpose)
    keyring = _keyring()
    key_id = keyring.newest_id
    nonce = os.urandom(NONCE_BYTES)
    sealed = _derive(keyring.by_id[key_id], context).encrypt(
        nonce, plaintext.encode("utf-8"), _associated_data(key_id, context)
    )
    return f"{FORMAT_VERSION}.{key_id}.{_b64encode(nonce + sealed)}"


def decrypt(token: str, *, owner_id: str, purpose: str) -> str:
    """Decrypt a token made by `encrypt` for the same owner and purpose; raises DecryptionError otherwise."""
    context = _context(owner_id, purpose)
    key_id, blob = _parse(token)
    master_key = _keyring().by_id.get(key_id)
    if master_key is None:
        raise DecryptionError(f"Encrypted value uses unknown key id {key_id!r}; is its key still in ENCRYPTION_KEYS?")
    try:
        data = _derive(master_key, context).decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated_data(key_id, context)
        )
        return data.decode("utf-8")
    except (InvalidTag, UnicodeDecodeError):
        raise DecryptionError("Encrypted value failed authentication (tampered, or wrong owner or purpose).")


def token_key_id(token: str) -> str:
    """The key id a token was written with; raises DecryptionError if the token is malformed."""
    return _parse(token)[0]


def needs_reencryption(token: str) -> bool:
    """Whether a token was written with a key other than the newest; raises DecryptionError if malformed."""
    return token_key_id(token) != current_key_id()


def reencrypt(token: str, *, owner_id: str, purpose: str) -> str:
    """Return the token under the newest key (the same token if it already is); raises DecryptionError."""
    plaintext = decrypt(token, owner_id=owner_id, purpose=purpose)
    if not needs_reencryption(token):
        return token
    return encrypt(plaintext, owner_id=owner_id, purpose=purpose)


# --- Previews --------------------------------------------------------------------------------


def mask_secret(value: str) -> str:
    """A preview such as `hook…8f3a` that never reveals more than a third of the secret (at most 8 chars)."""
    if not value:
        return ""
    length = len(value)
    if length >= 24:
        return f"{value[:4]}…{value[-4:]}"
    if length >= 12:
        return f"…{value[-4:]}"
    if length >= 6:
        return f"…{value[-2:]}"
    return "…"


# --- Registry of encrypted fields --------------------------------------------------------------


@dataclass(frozen=True)
class EncryptedField:
    """A model column holding tokens: its model label, field name, purpose and whose key it uses.

    The owner is either a column (`owner_attr`, e.g. "user_id") or, for secrets that belong to no
    user such as provider API keys, one fixed `owner_id` for every row.
    """

    model_label: str
    field_name: str
    purpose: str
    owner_attr: str | None
    owner_id: str | None = None

    @property
    def label(self) -> str:
        """`app_label.Model.field`, the key of this field in `reencrypt_all` counts."""
        return f"{self.model_label}.{self.field_name}"


_registry: dict[tuple[str, str], EncryptedField] = {}
_registry_lock = threading.Lock()


def register_encrypted_field(
    model_label: str, field_name: str, *, purpose: str, owner_attr: str | None = None, owner_id: str | None = None
) -> EncryptedField:
    """Register a column of tokens so key rotation finds it; call from `AppConfig.ready()`.

    Give `owner_attr` (the column holding each row's owner id) or a fixed `owner_id`, not both.
    """
    if model_label.count(".") != 1 or not all(model_label.split(".")):
        raise ValueError(f"model_label must look like 'app_label.ModelName', not {model_label!r}.")
    if not field_name or not purpose or bool(owner_attr) == bool(owner_id):
        raise ValueError("field_name and purpose must not be empty, and exactly one of owner_attr or owner_id given.")
    entry = EncryptedField(model_label, field_name, purpose, owner_attr, owner_id)
    with _registry_lock:
        existing = _registry.setdefault((model_label.lower(), field_name), entry)
    # ready() can run more than once (e.g. in tests); only a conflicting registration is a bug.
    if existing != entry:
        raise ValueError(f"{entry.label} is already registered with a different purpose or owner_attr.")
    return entry


def unregister_encrypted_field(model_label: str, field_name: str) -> None:
    """Forget a registered column (for tests); unknown ones are ignored."""
    with _registry_lock:
        _registry.pop((model_label.lower(), field_name), None)


def encrypted_fields() -> tuple[EncryptedField, ...]:
    """Every registered encrypted column, in registration order."""
    with _registry_lock:
        return tuple(_registry.values())


# --- Rotation --------------------------------------------------------------------------------


def reencrypt_all(batch_size: int = 500, *, dry_run: bool = False) -> dict[str, int]:
    """Re-encrypt every registered column's tokens not under the newest key; counts per `app.Model.field`."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    validate_encryption_keys()
    counts: dict[str, int] = {}
    for entry in encrypted_fields():
        model = apps.get_model(entry.model_label)
        field = model._meta.get_field(entry.field_name)
        owner_field = model._meta.get_field(entry.owner_attr) if entry.owner_attr else None
        label = f"{model._meta.label}.{field.name}"
        counts[label] = _reencrypt_field(
            model, field, owner_field, entry.owner_id, entry.purpose, label, batch_size, dry_run
        )
    return counts


def _reencrypt_field(
    model, field, owner_field, fixed_owner: str | None, purpose: str, label: str, batch_size: int, dry_run: bool
) -> int:
    using = router.db_for_write(model)
    # The base manager sees every row, whatever filtering a default manager adds.
    base = model._base_manager.using(using).exclude(
        **{f"{field.attname}__startswith": f"{FORMAT_VERSION}.{current_key_id()}."}
    )
    changed = 0
    last_pk = None
    while True:
        # One short transaction per batch: locks are held briefly and a crash loses at most one batch,
        # which the next run (idempotent) picks up again.
        with transaction.atomic(using=using):
            rows = base.order_by("pk")
            if last_pk is not None:
                rows = rows.filter(pk__gt=last_pk)
            if not dry_run:
                rows = rows.select_for_update()
            if owner_field is not None:
                batch = list(rows.values_list("pk", field.attname, owner_field.attname)[:batch_size])
            else:
                batch = [(pk, token, fixed_owner) for pk, token in rows.values_list("pk", field.attname)[:batch_size]]
            if not batch:
                return changed
            last_pk = batch[-1][0]
            updated = []
            for pk, token, owner in batch:
                if not token:
                    continue
                try:
                    new_token = reencrypt(token, owner_id=str(owner) if owner is not None else "", purpose=purpose)
                except (DecryptionError, ValueError) as exc:
                    raise DecryptionError(f"{label} pk={pk}: {exc}") from exc
                if new_token != token:
                    updated.append(model(**{model._meta.pk.attname: pk, field.attname: new_token}))
            if updated and not dry_run:
                # bulk_update writes this column only, so auto_now timestamps (which chat sync reads
                # as "changed by the user") stay as they were.
                model._base_manager.using(using).bulk_update(updated, [field.name], batch_size=batch_size)
            changed += len(updated)
