"""Encryption at rest: tokens, key rotation, the field registry, the rotation command and previews."""

import base64
import io
import os
import re

import pytest
from cryptography.exceptions import InvalidTag
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from claraverse import encryption
from claraverse.encryption import (
    DecryptionError,
    current_key_id,
    decrypt,
    encrypt,
    encrypted_fields,
    mask_secret,
    needs_reencryption,
    reencrypt,
    reencrypt_all,
    register_encrypted_field,
    token_key_id,
    unregister_encrypted_field,
)
from tests.support.models import SecretNote

TOKEN_PATTERN = re.compile(r"^v1\.[0-9a-f]{8}\.[A-Za-z0-9_-]+$")
OWNER = "user_aaaaaaaaaaaaaaaaaaaaaa"
OTHER_OWNER = "user_bbbbbbbbbbbbbbbbbbbbbb"
PURPOSE = "test.secret"


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@pytest.fixture
def old_key(settings) -> str:
    key = new_key()
    settings.ENCRYPTION_KEYS = [key]
    return key


@pytest.fixture(autouse=True)
def only_test_fields_registered(monkeypatch):
    """Hide the apps' own registered fields so that counts and queries here are the test model's alone."""
    monkeypatch.setattr(encryption, "_registry", {})


@pytest.fixture
def secret_note_field():
    """SecretNote.secret registered for rotation for the duration of one test only."""
    entry = register_encrypted_field("test_support.SecretNote", "secret", purpose=PURPOSE, owner_attr="owner_id")
    yield entry
    unregister_encrypted_field("test_support.SecretNote", "secret")


def flip_payload_byte(token: str, index: int) -> str:
    prefix, payload = token.rsplit(".", 1)
    blob = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    blob[index] ^= 0x01
    return f"{prefix}.{base64.urlsafe_b64encode(bytes(blob)).rstrip(b'=').decode()}"


def rotate(settings, *, keep_old: bool = True) -> str:
    """Put a fresh key first in ENCRYPTION_KEYS and return it."""
    key = new_key()
    settings.ENCRYPTION_KEYS = [key, *settings.ENCRYPTION_KEYS] if keep_old else [key]
    return key


# --- Round trips and token shape ---------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext",
    [
        "",
        "sk-live-0123456789abcdef",
        "Grüße, 世界 👋🏽 e\u0301",
        "line one\nline two\x00nul",
        "x" * 100_000,
    ],
)
def test_round_trip(old_key, plaintext):
    token = encrypt(plaintext, owner_id=OWNER, purpose=PURPOSE)

    assert TOKEN_PATTERN.match(token)
    assert token.isascii()
    assert decrypt(token, owner_id=OWNER, purpose=PURPOSE) == plaintext


def test_token_hides_plaintext_and_carries_newest_key_id(old_key):
    token = encrypt("hunter2-hunter2-hunter2", owner_id=OWNER, purpose=PURPOSE)

    assert "hunter2" not in token
    assert old_key not in token
    assert token.split(".")[1] == current_key_id() == token_key_id(token)


def test_ciphertext_differs_each_time(old_key):
    tokens = {encrypt("same secret", owner_id=OWNER, purpose=PURPOSE) for _ in range(20)}

    assert len(tokens) == 20
    assert {decrypt(t, owner_id=OWNER, purpose=PURPOSE) for t in tokens} == {"same secret"}


def test_key_id_differs_per_master_key(settings):
    settings.ENCRYPTION_KEYS = [new_key()]
    first = current_key_id()
    settings.ENCRYPTION_KEYS = [new_key()]

    assert current_key_id() != first


# --- Authentication: tampering, wrong scope, bad input ------------------------------------------


@pytest.mark.parametrize("index", [0, 11, 12, -17, -1], ids=["nonce0", "nonce11", "ciphertext", "last-ct", "tag"])
def test_tampering_is_detected(old_key, index):
    token = encrypt("attack at dawn", owner_id=OWNER, purpose=PURPOSE)

    with pytest.raises(DecryptionError):
        decrypt(flip_payload_byte(token, index), owner_id=OWNER, purpose=PURPOSE)


def test_truncated_token_is_detected(old_key):
    token = encrypt("attack at dawn", owner_id=OWNER, purpose=PURPOSE)

    with pytest.raises(DecryptionError):
        decrypt(token[:-4], owner_id=OWNER, purpose=PURPOSE)


def test_other_owner_cannot_decrypt(old_key):
    token = encrypt("mine", owner_id=OWNER, purpose=PURPOSE)

    with pytest.raises(DecryptionError) as excinfo:
        decrypt(token, owner_id=OTHER_OWNER, purpose=PURPOSE)
    assert "mine" not in str(excinfo.value)


def test_other_purpose_cannot_decrypt(old_key):
    token = encrypt("mine", owner_id=OWNER, purpose="chats.title")

    with pytest.raises(DecryptionError):
        decrypt(token, owner_id=OWNER, purpose="memories.content")


def test_scope_encoding_is_unambiguous(old_key):
    # ("a.b", "c") and ("a", "b.c") must not share a derived key or associated data.
    token = encrypt("s", owner_id="c", purpose="a.b")

    with pytest.raises(DecryptionError):
        decrypt(token, owner_id="b.c", purpose="a")


def split_token(token: str) -> tuple[str, bytes, bytes]:
    _, key_id, payload = token.split(".")
    blob = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return key_id, blob[:12], blob[12:]


def test_derived_key_alone_binds_the_owner(old_key):
    # White-box: each of the two bindings must hold even if the other one were dropped.
    token = encrypt("s", owner_id=OWNER, purpose=PURPOSE)
    key_id, nonce, sealed = split_token(token)
    master = base64.urlsafe_b64decode(old_key)
    right_aad = encryption._associated_data(key_id, encryption._context(OWNER, PURPOSE))

    assert encryption._derive(master, encryption._context(OWNER, PURPOSE)).decrypt(nonce, sealed, right_aad) == b"s"
    with pytest.raises(InvalidTag):
        encryption._derive(master, encryption._context(OTHER_OWNER, PURPOSE)).decrypt(nonce, sealed, right_aad)


def test_associated_data_alone_binds_the_owner(old_key):
    token = encrypt("s", owner_id=OWNER, purpose=PURPOSE)
    key_id, nonce, sealed = split_token(token)
    right_key = encryption._derive(base64.urlsafe_b64decode(old_key), encryption._context(OWNER, PURPOSE))

    with pytest.raises(InvalidTag):
        right_key.decrypt(nonce, sealed, encryption._associated_data(key_id, encryption._context(OTHER_OWNER, PURPOSE)))


def test_token_moved_to_other_key_id_fails(settings, old_key):
    token = encrypt("s", owner_id=OWNER, purpose=PURPOSE)
    rotate(settings)
    forged = token.replace(f".{token_key_id(token)}.", f".{current_key_id()}.")

    with pytest.raises(DecryptionError):
        decrypt(forged, owner_id=OWNER, purpose=PURPOSE)


@pytest.mark.parametrize(
    "token",
    ["", "plaintext secret", "v1.", "v1.abcd1234", "v1.abcd1234.", "v2.abcd1234.AAAA", "v1.ABCD1234.AAAA", None, b"v1"],
)
def test_malformed_token_is_a_decryption_error(old_key, token):
    with pytest.raises(DecryptionError):
        decrypt(token, owner_id=OWNER, purpose=PURPOSE)


def test_short_payload_is_a_decryption_error(old_key):
    with pytest.raises(DecryptionError):
        decrypt(f"v1.{current_key_id()}.{'A' * 36}", owner_id=OWNER, purpose=PURPOSE)


def test_unknown_key_id_is_a_decryption_error_without_key_material(settings, old_key):
    token = encrypt("top secret", owner_id=OWNER, purpose=PURPOSE)
    unrelated = new_key()
    settings.ENCRYPTION_KEYS = [unrelated]

    with pytest.raises(DecryptionError, match="unknown key id") as excinfo:
        decrypt(token, owner_id=OWNER, purpose=PURPOSE)
    message = str(excinfo.value)
    assert old_key not in message
    assert unrelated not in message
    assert "top secret" not in message


@pytest.mark.parametrize("owner_id", ["", None, 42])
def test_owner_must_be_a_non_empty_string(old_key, owner_id):
    with pytest.raises((TypeError, ValueError)):
        encrypt("s", owner_id=owner_id, purpose=PURPOSE)


# --- Key configuration -------------------------------------------------------------------------

BAD_KEYS = {
    "not-base64": "this is not a key at all, not even close!!!!",
    "too-short": base64.urlsafe_b64encode(os.urandom(16)).decode(),
    "too-long": base64.urlsafe_b64encode(os.urandom(48)).decode(),
    "standard-alphabet": "+/" + base64.urlsafe_b64encode(os.urandom(32)).decode()[2:],
    "blank": "   ",
}


@pytest.mark.parametrize("name", BAD_KEYS)
def test_invalid_configured_key_is_a_clear_error(settings, name):
    bad = BAD_KEYS[name]
    settings.ENCRYPTION_KEYS = [new_key(), bad]

    with pytest.raises(ImproperlyConfigured, match=r"ENCRYPTION_KEYS\[1\]") as excinfo:
        encrypt("s", owner_id=OWNER, purpose=PURPOSE)
    if bad.strip():
        assert bad not in str(excinfo.value)


@pytest.mark.parametrize("value", [[], (), "a-single-string-instead-of-a-list", None])
def test_missing_or_empty_key_list_is_a_clear_error(settings, value):
    settings.ENCRYPTION_KEYS = value

    with pytest.raises(ImproperlyConfigured, match="ENCRYPTION_KEYS"):
        encrypt("s", owner_id=OWNER, purpose=PURPOSE)


def test_duplicate_key_is_a_clear_error(settings):
    key = new_key()
    settings.ENCRYPTION_KEYS = [key, f" {key} "]

    with pytest.raises(ImproperlyConfigured, match="repeats") as excinfo:
        encrypt("s", owner_id=OWNER, purpose=PURPOSE)
    assert key not in str(excinfo.value)


def test_unpadded_key_is_accepted_as_the_same_key(settings, old_key):
    token = encrypt("s", owner_id=OWNER, purpose=PURPOSE)
    settings.ENCRYPTION_KEYS = [old_key.rstrip("=")]

    assert decrypt(token, owner_id=OWNER, purpose=PURPOSE) == "s"


def test_system_check_reports_invalid_keys(settings):
    settings.ENCRYPTION_KEYS = ["nope"]

    errors = [e for e in run_checks() if e.id == "claraverse.E001"]

    assert len(errors) == 1
    assert "ENCRYPTION_KEYS[0]" in errors[0].msg


# --- Rotation of single values -----------------------------------------------------------------


def test_rotation_old_tokens_still_decrypt_and_new_writes_use_newest(settings, old_key):
    old_token = encrypt("rotate me", owner_id=OWNER, purpose=PURPOSE)
    old_id = current_key_id()
    assert needs_reencryption(old_token) is False

    rotate(settings)

    assert current_key_id() != old_id
    assert decrypt(old_token, owner_id=OWNER, purpose=PURPOSE) == "rotate me"
    assert needs_reencryption(old_token) is True
    fresh = encrypt("new write", owner_id=OWNER, purpose=PURPOSE)
    assert token_key_id(fresh) == current_key_id()
    assert needs_reencryption(fresh) is False

    new_token = reencrypt(old_token, owner_id=OWNER, purpose=PURPOSE)
    assert token_key_id(new_token) == current_key_id()
    assert needs_reencryption(new_token) is False

    settings.ENCRYPTION_KEYS = settings.ENCRYPTION_KEYS[:1]
    assert decrypt(new_token, owner_id=OWNER, purpose=PURPOSE) == "rotate me"
    with pytest.raises(DecryptionError):
        decrypt(old_token, owner_id=OWNER, purpose=PURPOSE)


def test_reencrypt_keeps_current_tokens_and_checks_scope(settings, old_key):
    token = encrypt("s", owner_id=OWNER, purpose=PURPOSE)

    assert reencrypt(token, owner_id=OWNER, purpose=PURPOSE) == token
    rotate(settings)
    with pytest.raises(DecryptionError):
        reencrypt(token, owner_id=OTHER_OWNER, purpose=PURPOSE)


def test_needs_reencryption_rejects_malformed_tokens(old_key):
    with pytest.raises(DecryptionError):
        needs_reencryption("not a token")


# --- Registry ----------------------------------------------------------------------------------


def test_registry_register_list_and_unregister():
    before = encrypted_fields()
    entry = register_encrypted_field("test_support.SecretNote", "secret", purpose=PURPOSE, owner_attr="owner_id")
    try:
        assert entry in encrypted_fields()
        assert entry.label == "test_support.SecretNote.secret"
        # Registering the same thing again (AppConfig.ready() twice) is harmless.
        register_encrypted_field("test_support.SecretNote", "secret", purpose=PURPOSE, owner_attr="owner_id")
        assert encrypted_fields().count(entry) == 1
        with pytest.raises(ValueError, match="already registered"):
            register_encrypted_field("test_support.SecretNote", "secret", purpose="other", owner_attr="owner_id")
    finally:
        unregister_encrypted_field("test_support.SecretNote", "secret")
    assert encrypted_fields() == before


def test_registry_rejects_bad_labels():
    with pytest.raises(ValueError):
        register_encrypted_field("SecretNote", "secret", purpose=PURPOSE, owner_attr="owner_id")


def test_test_model_is_not_registered_outside_tests_that_ask_for_it():
    assert all(entry.model_label != "test_support.SecretNote" for entry in encrypted_fields())


# --- reencrypt_all and the management command ----------------------------------------------------


def make_notes(owners_and_secrets):
    return [
        SecretNote.objects.create(
            owner_id=owner, secret=encrypt(secret, owner_id=owner, purpose=PURPOSE) if secret is not None else ""
        )
        for owner, secret in owners_and_secrets
    ]


def run_rotate(*args) -> str:
    out = io.StringIO()
    call_command("rotate_encryption_keys", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_command_reencrypts_rows_under_the_new_key(settings, old_key, secret_note_field):
    plaintexts = {}
    notes = make_notes([(OWNER, "alpha"), (OTHER_OWNER, "beta"), (OWNER, None), (OWNER, "gamma ✓"), (OTHER_OWNER, "δ")])
    for note, secret in zip(notes, ["alpha", "beta", None, "gamma ✓", "δ"], strict=True):
        plaintexts[note.pk] = secret
    old_id = current_key_id()
    before = {n.pk: (n.secret, n.updated_at) for n in SecretNote.objects.all()}

    rotate(settings)
    # A row written after the rotation is already current and must be left byte for byte.
    current = make_notes([(OWNER, "written after rotation")])[0]
    plaintexts[current.pk] = "written after rotation"
    new_id = current_key_id()

    output = run_rotate("--batch-size", "2")

    assert "test_support.SecretNote.secret: re-encrypted 4" in output
    rows = {n.pk: n for n in SecretNote.objects.all()}
    for pk, plaintext in plaintexts.items():
        stored = rows[pk].secret
        if plaintext is None:
            assert stored == ""
            continue
        assert token_key_id(stored) == new_id != old_id
        assert decrypt(stored, owner_id=rows[pk].owner_id, purpose=PURPOSE) == plaintext
    assert rows[current.pk].secret == current.secret
    # Rotation is not a user edit: auto_now timestamps (read by chat sync) stay put.
    assert all(rows[pk].updated_at == before[pk][1] for pk in before)

    # The old key can now go.
    settings.ENCRYPTION_KEYS = [settings.ENCRYPTION_KEYS[0]]
    for pk, plaintext in plaintexts.items():
        if plaintext is not None:
            assert decrypt(rows[pk].secret, owner_id=rows[pk].owner_id, purpose=PURPOSE) == plaintext

    # Idempotent: nothing left to do.
    assert "re-encrypted 0" in run_rotate()


@pytest.mark.django_db
def test_command_dry_run_changes_nothing(settings, old_key, secret_note_field):
    make_notes([(OWNER, "alpha"), (OTHER_OWNER, "beta"), (OWNER, None)])
    before = dict(SecretNote.objects.values_list("pk", "secret"))
    rotate(settings)

    output = run_rotate("--dry-run")

    assert "test_support.SecretNote.secret: would re-encrypt 2" in output
    assert dict(SecretNote.objects.values_list("pk", "secret")) == before
    assert all(needs_reencryption(token) for token in before.values() if token)


@pytest.mark.django_db
def test_reencrypt_all_walks_in_batches(settings, old_key, secret_note_field):
    make_notes([(OWNER, f"secret {i}") for i in range(7)])
    rotate(settings)

    counts = reencrypt_all(batch_size=3)

    assert counts == {"test_support.SecretNote.secret": 7}
    assert all(not needs_reencryption(t) for t in SecretNote.objects.values_list("secret", flat=True))
    assert reencrypt_all(batch_size=3) == {"test_support.SecretNote.secret": 0}


@pytest.mark.django_db
def test_reencrypt_all_reads_batches_not_whole_tables(settings, old_key, secret_note_field, monkeypatch):
    make_notes([(OWNER, f"secret {i}") for i in range(5)])
    rotate(settings)
    seen = []
    real = encryption.reencrypt

    def spy(token, **kwargs):
        seen.append(token)
        return real(token, **kwargs)

    monkeypatch.setattr(encryption, "reencrypt", spy)

    with CaptureQueriesContext(connection) as ctx:
        reencrypt_all(batch_size=2)

    selects = [q["sql"] for q in ctx.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(seen) == 5
    assert len(selects) == 4  # 2 + 2 + 1 rows, then an empty batch ends the walk
    assert all("LIMIT 2" in sql for sql in selects)


@pytest.mark.django_db
def test_command_reports_a_row_that_cannot_be_decrypted(settings, old_key, secret_note_field):
    note = make_notes([(OWNER, "alpha")])[0]
    # A token copied to another owner's row must not be silently re-encrypted for that owner.
    SecretNote.objects.filter(pk=note.pk).update(owner_id=OTHER_OWNER)
    rotate(settings)

    with pytest.raises(CommandError, match=rf"test_support\.SecretNote\.secret pk={note.pk}") as excinfo:
        run_rotate()
    assert "alpha" not in str(excinfo.value)
    assert SecretNote.objects.get(pk=note.pk).secret == note.secret


@pytest.mark.django_db
def test_command_with_nothing_registered(old_key):
    assert "No encrypted fields are registered" in run_rotate()


def test_command_rejects_invalid_keys(settings):
    settings.ENCRYPTION_KEYS = ["nope"]

    with pytest.raises(CommandError, match=r"ENCRYPTION_KEYS\[0\]"):
        run_rotate()


# --- Masked previews ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ""),
        ("abc", "…"),
        ("abcde", "…"),
        ("abcdef", "…ef"),
        ("abcdefghijk", "…jk"),
        ("abcdefghijkl", "…ijkl"),
        ("hooks-0123456789abcd-8f3a", "hook…8f3a"),
        ("sk-live-0123456789abcdefghijklmnopqrstuvwxyz", "sk-l…wxyz"),
    ],
)
def test_mask_secret(value, expected):
    assert mask_secret(value) == expected


@pytest.mark.parametrize("length", range(0, 80))
def test_mask_secret_never_reveals_more_than_a_third(length):
    value = "".join(chr(0x61 + (i % 26)) for i in range(length))

    revealed = len(mask_secret(value).replace("…", ""))

    assert revealed <= length // 3
    assert revealed <= 8
