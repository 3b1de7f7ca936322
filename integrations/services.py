"""Writes of providers and models: admin CRUD, env-declared providers, model import, tests and benchmarks."""

from __future__ import annotations

import logging
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import jsonschema
from django.conf import settings
from django.db import IntegrityError, transaction

from claraverse.encryption import mask_secret
from claraverse.errors import ApplicationError
from claraverse.timeutils import isoformat_z

from .models import LLMModel, Provider, ProviderSource, ProviderType
from .provider_keys import encrypt_provider_key

logger = logging.getLogger("claraverse.integrations")

DEFAULT_BASE_URLS = {
    ProviderType.OPENAI: "https://api.openai.com/v1",
    ProviderType.ANTHROPIC: "https://api.anthropic.com",
    ProviderType.OLLAMA: "http://localhost:11434",
}


def _set_api_key(provider: Provider, api_key: str) -> None:
    provider.api_key_encrypted = encrypt_provider_key(api_key)
    provider.api_key_preview = mask_secret(api_key) if api_key else ""


def default_base_url(provider_type: str) -> str | None:
    """The usual endpoint of a provider type (None for OpenAI-compatible, which has none)."""
    return DEFAULT_BASE_URLS.get(provider_type)


def _duplicate_name() -> ApplicationError:
    return ApplicationError(
        "CONFLICT", "A provider with this name already exists.", details={"name": ["Already in use."]}
    )


def provider_create(
    *, name: str, type: str, base_url: str | None = None, api_key: str = "", enabled: bool = True
) -> Provider:
    """Register a provider; its API key is encrypted at rest and only a masked preview is kept."""
    base_url = base_url or default_base_url(type)
    if not base_url:
        raise ApplicationError("VALIDATION_ERROR", details={"base_url": ["Required for this provider type."]})
    provider = Provider(name=name, type=type, base_url=base_url, enabled=enabled)
    _set_api_key(provider, api_key)
    try:
        with transaction.atomic():
            provider.save()
    except IntegrityError:
        raise _duplicate_name() from None
    return provider


def provider_update(*, provider: Provider, fields: dict[str, Any]) -> Provider:
    """Change the fields given; `api_key: ""` removes the key, an absent `api_key` keeps it."""
    for field in ("name", "type", "base_url", "enabled"):
        if field in fields:
            setattr(provider, field, fields[field])
    if "api_key" in fields:
        _set_api_key(provider, fields["api_key"])
    try:
        with transaction.atomic():
            provider.save()
    except IntegrityError:
        raise _duplicate_name() from None
    return provider


def provider_toggle(*, provider: Provider) -> Provider:
    """Flip `enabled`."""
    provider.enabled = not provider.enabled
    provider.save(update_fields=["enabled", "updated_at"])
    return provider


def provider_delete(*, provider: Provider) -> None:
    """Delete a provider and its models."""
    provider.delete()


def model_create(*, provider: Provider, fields: dict[str, Any]) -> LLMModel:
    """Register a model under the admin-chosen public id; `name` and `display_name` default to it."""
    model = LLMModel(provider=provider, **fields)
    model.name = model.name or model.id
    model.display_name = model.display_name or model.id
    try:
        with transaction.atomic():
            if LLMModel.objects.filter(pk=model.id).exists():
                raise IntegrityError
            model.save(force_insert=True)
    except IntegrityError:
        raise ApplicationError(
            "CONFLICT", "A model with this id already exists.", details={"id": ["Already in use."]}
        ) from None
    return model


def model_update(*, model: LLMModel, fields: dict[str, Any]) -> LLMModel:
    """Change the fields given (the id is permanent)."""
    for field, value in fields.items():
        setattr(model, field, value)
    model.save()
    return model


def model_delete(*, model: LLMModel) -> None:
    """Delete a model."""
    model.delete()


def provider_import_models(*, provider: Provider) -> dict[str, list]:
    """Create a model for each one the provider lists at its `/models` endpoint and we lack.

    Imported models use the provider's model name as their public id. A name already used as
    an id (by this or another provider) is skipped, with the reason.
    """
    from .llm.client import list_provider_models

    listed = list_provider_models(provider)
    imported, skipped = [], []
    for entry in listed:
        model_id = str(entry.get("id", "")).strip()
        if not model_id:
            continue
        existing = LLMModel.objects.filter(pk=model_id).select_related("provider").first()
        if existing is not None:
            reason = "already registered" if existing.provider_id == provider.id else "id used by another provider"
            skipped.append({"id": model_id, "reason": reason})
            continue
        imported.append(
            LLMModel.objects.create(
                id=model_id,
                provider=provider,
                name=model_id,
                display_name=str(entry.get("display_name") or model_id)[:200],
                context_length=int(entry.get("context_length") or 8192),
            )
        )
    return {"imported": imported, "skipped": skipped}


@transaction.atomic
def providers_sync_from_env() -> list[Provider]:
    """Create or update the providers declared in the environment (settings.LLM_ENV_PROVIDERS).

    They are matched by name; their models are added when missing and never deleted, so an
    admin's changes to a model survive restarts.
    """
    synced = []
    for declared in settings.LLM_ENV_PROVIDERS:
        provider = Provider.objects.filter(name=declared["name"]).first() or Provider(name=declared["name"])
        provider.type = declared["type"]
        provider.base_url = declared.get("base_url") or default_base_url(declared["type"]) or ""
        provider.source = ProviderSource.ENV
        _set_api_key(provider, declared.get("api_key", ""))
        provider.save()
        for model_id in declared.get("models", []):
            LLMModel.objects.get_or_create(
                id=model_id, defaults={"provider": provider, "name": model_id, "display_name": model_id}
            )
        synced.append(provider)
    return synced


# --- Connection test and benchmark ----------------------------------------------------------------

BENCHMARK_PROMPT = "Write three short sentences about the sea."
STRUCTURED_OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1},
        "country": {"type": "string", "minLength": 1},
        "population": {"type": "integer", "minimum": 0},
    },
    "required": ["city", "country", "population"],
    "additionalProperties": False,
}
STRUCTURED_OUTPUT_PROMPT = (
    "Give the largest city of Japan as a JSON object with the keys city, country and population (an integer)."
)


def _now_iso() -> str:
    return isoformat_z(datetime.now(UTC))


def model_test_connection(*, model: LLMModel, user) -> dict[str, Any]:
    """One small real generation; answers `{success, latency_ms, message}` and stores it on the model."""
    from .llm.client import complete_chat
    from .llm.types import LLMRequest

    started = time.monotonic()
    request = LLMRequest(
        model_id=model.id,
        messages=[{"role": "user", "content": "Reply with the single word: OK"}],
        max_tokens=16,
    )
    try:
        result = complete_chat(request, user=user, source="system", include_disabled=True)
        outcome = {"success": True, "message": f"Model answered: {result.text.strip()[:200]!r}"}
    except ApplicationError as exc:
        outcome = {"success": False, "message": exc.message}
    outcome["latency_ms"] = int((time.monotonic() - started) * 1000)
    model.last_connection_test = {**outcome, "tested_at": _now_iso()}
    model.save(update_fields=["last_connection_test", "updated_at"])
    return outcome


def _structured_output_passes(text: str) -> bool:
    import json

    try:
        jsonschema.validate(json.loads(text), STRUCTURED_OUTPUT_SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def model_benchmark(*, model: LLMModel, user, runs: int | None = None) -> dict[str, Any]:
    """Timed generations plus structured-output checks validated against a JSON Schema.

    Each run streams one free-text answer (time to first token, tokens per second, latency) and
    asks for one JSON answer whose *content* must validate against STRUCTURED_OUTPUT_SCHEMA.
    """
    from .llm.client import complete_chat
    from .llm.types import LLMRequest

    runs = runs or settings.LLM_BENCHMARK_RUNS
    ttfts, speeds, latencies, passes = [], [], [], 0
    for _ in range(runs):
        timed = complete_chat(
            LLMRequest(model_id=model.id, messages=[{"role": "user", "content": BENCHMARK_PROMPT}], max_tokens=200),
            user=user,
            source="system",
            include_disabled=True,
        )
        latencies.append(timed.latency_ms)
        if timed.ttft_ms is not None:
            ttfts.append(timed.ttft_ms)
        generating_ms = max(1, timed.latency_ms - (timed.ttft_ms or 0))
        speeds.append(timed.usage.completion_tokens / (generating_ms / 1000))
        structured = complete_chat(
            LLMRequest(
                model_id=model.id,
                messages=[{"role": "user", "content": STRUCTURED_OUTPUT_PROMPT}],
                response_format="json",
                json_schema=STRUCTURED_OUTPUT_SCHEMA,
                max_tokens=200,
            ),
            user=user,
            source="system",
            include_disabled=True,
        )
        passes += _structured_output_passes(structured.text)
    report = {
        "model_id": model.id,
        "runs": runs,
        "ttft_ms": round(statistics.median(ttfts)) if ttfts else None,
        "tokens_per_second": round(statistics.mean(speeds), 2),
        "latency_ms": round(statistics.median(latencies)),
        "structured_output_pass_rate": round(passes / runs, 4),
        "tested_at": _now_iso(),
    }
    model.last_benchmark = report
    model.save(update_fields=["last_benchmark", "updated_at"])
    return report
