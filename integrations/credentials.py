"""Credentials: validated against their integration, encrypted per user, resolved for tools."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator, URLValidator
from django.db import transaction
from django.utils import timezone

from claraverse.encryption import decrypt, encrypt, mask_secret
from claraverse.errors import ApplicationError
from claraverse.timeutils import isoformat_z

from .catalogue import Integration, IntegrationField, integration_get
from .models import Credential

PURPOSE = "credential"
MAX_TEXT_CHARS = 2000
_url_validator = URLValidator(schemes=["http", "https"])
_email_validator = EmailValidator()


def _field_value(spec: IntegrationField, value: Any) -> Any:
    """Check one field's value by its type; raises ValueError with a message."""
    if spec.type == "integer":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise ValueError("Must be a whole number from 1 to 65535.")
        return value
    if spec.type == "boolean":
        if not isinstance(value, bool):
            raise ValueError("Must be true or false.")
        return value
    if not isinstance(value, str):
        raise ValueError("Must be a string.")
    value = value.strip()
    if spec.required and not value:
        raise ValueError("Must not be empty.")
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"Must be at most {MAX_TEXT_CHARS} characters.")
    try:
        if spec.type == "url" and value:
            _url_validator(value)
        if spec.type == "email" and value:
            _email_validator(value)
    except DjangoValidationError:
        raise ValueError(f"Must be a valid {'http(s) URL' if spec.type == 'url' else 'email address'}.") from None
    if spec.type == "select" and value not in spec.choices:
        raise ValueError(f"Must be one of: {', '.join(spec.choices)}.")
    return value


def validate_credential_fields(integration: Integration, values: Any) -> dict[str, Any]:
    """The complete, typed field set of a credential; a 400 names every bad field."""
    if not isinstance(values, dict):
        raise ApplicationError(
            "VALIDATION_ERROR", "credentials must be an object.", details={"credentials": ["Must be an object."]}
        )
    known = {spec.name: spec for spec in integration.fields}
    errors: dict[str, list[str]] = {
        f"credentials.{name}": ["Unknown field for this integration."] for name in values if name not in known
    }
    cleaned: dict[str, Any] = {}
    for name, spec in known.items():
        if values.get(name) in (None, ""):
            if spec.required:
                errors[f"credentials.{name}"] = ["This field is required."]
            elif spec.default is not None:
                cleaned[name] = spec.default
            continue
        try:
            cleaned[name] = _field_value(spec, values[name])
        except ValueError as exc:
            errors[f"credentials.{name}"] = [str(exc)]
    if errors:
        raise ApplicationError("VALIDATION_ERROR", "Invalid credential fields.", details=errors)
    return cleaned


def _preview(integration: Integration, values: dict[str, Any]) -> str:
    secrets = [str(values[name]) for name in integration.secret_fields if values.get(name)]
    shown = secrets[0] if secrets else str(next(iter(values.values()), ""))
    return mask_secret(shown)


def _store(credential: Credential, integration: Integration, values: dict[str, Any]) -> None:
    credential.fields_encrypted = encrypt(json.dumps(values), owner_id=credential.user_id, purpose=PURPOSE)
    credential.preview = _preview(integration, values)


def credential_fields(credential: Credential) -> dict[str, Any]:
    """The decrypted fields of a credential."""
    return json.loads(decrypt(credential.fields_encrypted, owner_id=credential.user_id, purpose=PURPOSE))


def _integration_or_400(integration_id: str) -> Integration:
    integration = integration_get(integration_id)
    if integration is None:
        raise ApplicationError(
            "VALIDATION_ERROR", "Unknown integration.", details={"integration_id": ["Unknown integration."]}
        )
    return integration


def credential_create(*, user, integration_id: str, name: str, values: Any) -> Credential:
    """Store a credential for one of the catalogue's integrations."""
    integration = _integration_or_400(integration_id)
    credential = Credential(user=user, integration_id=integration_id, name=name)
    _store(credential, integration, validate_credential_fields(integration, values))
    credential.save()
    return credential


def credential_update(*, credential: Credential, name: str | None = None, values: Any = None) -> Credential:
    """Rename, and/or change fields: the fields sent replace those stored, the others are kept."""
    if name is not None:
        credential.name = name
    if values is not None:
        if not isinstance(values, dict):
            raise ApplicationError(
                "VALIDATION_ERROR", "credentials must be an object.", details={"credentials": ["Must be an object."]}
            )
        integration = _integration_or_400(credential.integration_id)
        merged = {**credential_fields(credential), **values}
        _store(credential, integration, validate_credential_fields(integration, merged))
    credential.save()
    return credential


def credential_delete(*, credential: Credential) -> None:
    """Delete a credential."""
    credential.delete()


def credential_test(*, credential: Credential) -> dict[str, Any]:
    """A real call with the credential (test message, SMTP login, ping); the outcome is stored."""
    from .connection_tests import CONNECTION_TESTS

    check = CONNECTION_TESTS.get(credential.integration_id)
    if check is None:
        success, message = False, "This integration cannot be tested."
    else:
        success, message = check(credential_fields(credential))
    credential.last_test = {"success": success, "message": message, "tested_at": isoformat_z(timezone.now())}
    credential.save(update_fields=["last_test", "updated_at"])
    return {"success": success, "message": message}


def credential_fields_for_tool(*, user, integration_id: str, credential_id: str | None = None) -> dict[str, Any]:
    """The fields a tool uses: the chosen credential, or the user's only one of that integration."""
    from integrations.tools import ToolExecutionError

    integration = integration_get(integration_id)
    label = integration.name if integration else integration_id
    candidates = Credential.objects.filter(user=user, integration_id=integration_id)
    if credential_id:
        chosen = candidates.filter(pk=credential_id).first()
        if chosen is None:
            raise ToolExecutionError(f"No {label} credential with id {credential_id[:64]}.")
    else:
        found = list(candidates[:2])
        if not found:
            raise ToolExecutionError(f"No {label} credential is configured; add one under Credentials.")
        if len(found) > 1:
            raise ToolExecutionError(f"Several {label} credentials exist; choose one with credential_id.")
        chosen = found[0]
    with transaction.atomic():
        Credential.objects.filter(pk=chosen.pk).update(last_used_at=timezone.now())
    return credential_fields(chosen)


def tool_context_for(*, user, credential_id: str | None = None):
    """A ToolContext whose tools reach this user's credentials (and nobody else's)."""
    from integrations.tools import ToolContext

    def resolve(integration_id: str) -> dict[str, Any]:
        return credential_fields_for_tool(user=user, integration_id=integration_id, credential_id=credential_id)

    return ToolContext(user=user, credential_id=credential_id, credentials=resolve)
