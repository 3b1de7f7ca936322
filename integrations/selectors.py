"""Reads of providers and models."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet

from claraverse.errors import ApplicationError

from .models import LLMModel, Provider


def provider_list() -> QuerySet[Provider]:
    """Every provider, oldest first."""
    return Provider.objects.order_by("created_at", "id")


def provider_get(*, provider_id: str) -> Provider:
    """One provider or a 404."""
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        raise ApplicationError("NOT_FOUND", "Provider not found.")
    return provider


def model_list(*, provider_id: str | None = None) -> QuerySet[LLMModel]:
    """Every model (optionally of one provider), by id."""
    models = LLMModel.objects.select_related("provider").order_by("id")
    return models.filter(provider_id=provider_id) if provider_id else models


def model_get(*, model_id: str) -> LLMModel:
    """One model or a 404."""
    model = LLMModel.objects.select_related("provider").filter(pk=model_id).first()
    if model is None:
        raise ApplicationError("NOT_FOUND", "Model not found.")
    return model


def public_provider_list() -> QuerySet[Provider]:
    """Enabled providers, for everyone."""
    return provider_list().filter(enabled=True)


def public_model_list() -> QuerySet[LLMModel]:
    """Enabled models of enabled providers, for everyone."""
    return model_list().filter(enabled=True, provider__enabled=True)


def recommended_models() -> dict[str, str | None]:
    """`{default, fast, smart}` model ids: from settings where set and available, else from enabled models.

    Without settings: `default` is the first enabled model by id, `fast` the one with the smallest
    context window, `smart` the one with the largest (a rough but explainable proxy).
    """
    available = list(public_model_list())
    available_ids = {model.id for model in available}
    by_context = sorted(available, key=lambda model: (model.context_length, model.id))
    fallback = {
        "default": available[0].id if available else None,
        "fast": by_context[0].id if by_context else None,
        "smart": by_context[-1].id if by_context else None,
    }
    configured = {
        "default": settings.RECOMMENDED_MODEL_DEFAULT,
        "fast": settings.RECOMMENDED_MODEL_FAST,
        "smart": settings.RECOMMENDED_MODEL_SMART,
    }
    return {
        role: configured[role] if configured[role] in available_ids else fallback[role]
        for role in ("default", "fast", "smart")
    }


def provider_get_for_input(*, provider_id: str) -> Provider:
    """The provider named in a request body: an unknown id is a 400 on that field, not a 404."""
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        raise ApplicationError("VALIDATION_ERROR", "Unknown provider.", details={"provider_id": ["Unknown provider."]})
    return provider
