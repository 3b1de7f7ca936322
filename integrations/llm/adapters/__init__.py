"""Provider adapters: one per wire protocol (OpenAI chat completions, Anthropic Messages)."""

from __future__ import annotations

from integrations.llm.adapters.anthropic import AnthropicAdapter
from integrations.llm.adapters.base import ProviderAdapter
from integrations.llm.adapters.openai import OpenAIAdapter

__all__ = ["AnthropicAdapter", "OpenAIAdapter", "ProviderAdapter", "adapter_for"]


def adapter_for(provider_type: str, base_url: str, api_key: str) -> ProviderAdapter:
    """The adapter speaking the API of a provider type (openai, openai_compatible, ollama, anthropic)."""
    if provider_type == "anthropic":
        return AnthropicAdapter(base_url, api_key)
    if provider_type in {"openai", "openai_compatible", "ollama"}:
        return OpenAIAdapter(base_url, api_key, provider_type=provider_type)
    raise ValueError(f"Unknown provider type {provider_type!r}.")
