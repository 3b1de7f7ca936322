"""The integrations users can hold credentials for (API.md Credential Endpoints, CONTRACT §8).

Each integration lists its fields, which of them are secret, and how a credential is checked
(`connection_tests.CONNECTION_TESTS`). Tools that need one name it in `requires_integration`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class IntegrationField:
    """One credential field: `type` is string, url, email, integer, boolean or select (with `choices`)."""

    name: str
    type: str = "string"
    required: bool = True
    secret: bool = False
    description: str = ""
    default: Any = None
    choices: tuple[str, ...] = ()

    def public_dict(self) -> dict[str, Any]:
        entry = {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "secret": self.secret,
            "description": self.description,
        }
        if self.default is not None:
            entry["default"] = self.default
        if self.choices:
            entry["choices"] = list(self.choices)
        return entry


@dataclass(frozen=True)
class Integration:
    """An outside service: its fields and how its credentials authenticate."""

    id: str
    name: str
    description: str
    icon: str
    auth_type: str
    fields: tuple[IntegrationField, ...] = field(default_factory=tuple)

    def public_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "icon": self.icon,
            "auth_type": self.auth_type,
            "fields": [integration_field.public_dict() for integration_field in self.fields],
        }

    @property
    def secret_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.secret]


INTEGRATIONS: dict[str, Integration] = {
    integration.id: integration
    for integration in [
        Integration(
            id="slack",
            name="Slack",
            description="Send messages to Slack channels",
            icon="slack",
            auth_type="api_key",
            fields=(
                IntegrationField(
                    "webhook_url",
                    "url",
                    secret=True,
                    description="An incoming-webhook URL (https://hooks.slack.com/services/...).",
                ),
            ),
        ),
        Integration(
            id="discord",
            name="Discord",
            description="Send messages to Discord channels",
            icon="discord",
            auth_type="api_key",
            fields=(
                IntegrationField(
                    "webhook_url",
                    "url",
                    secret=True,
                    description="A channel webhook URL (https://discord.com/api/webhooks/...).",
                ),
            ),
        ),
        Integration(
            id="email",
            name="Email (SMTP)",
            description="Send email through your SMTP server",
            icon="mail",
            auth_type="basic",
            fields=(
                IntegrationField("host", description="SMTP server host name."),
                IntegrationField("port", "integer", required=False, default=587, description="SMTP port."),
                IntegrationField(
                    "security",
                    "select",
                    required=False,
                    default="starttls",
                    choices=("starttls", "ssl", "none"),
                    description="starttls (port 587), ssl (implicit TLS, port 465) or none.",
                ),
                IntegrationField("username", required=False, description="Login name, if the server wants one."),
                IntegrationField("password", required=False, secret=True, description="Login password."),
                IntegrationField("from_address", "email", description="The sender address."),
            ),
        ),
        Integration(
            id="webhook",
            name="Webhook",
            description="POST JSON to any HTTP endpoint",
            icon="webhook",
            auth_type="api_key",
            fields=(
                IntegrationField("url", "url", secret=True, description="The endpoint that receives the JSON."),
                IntegrationField(
                    "authorization",
                    required=False,
                    secret=True,
                    description="Optional Authorization header value (e.g. 'Bearer ...').",
                ),
            ),
        ),
        Integration(
            id="searxng",
            name="SearXNG",
            description="Your own SearXNG instance for web search",
            icon="search",
            auth_type="none",
            fields=(IntegrationField("base_url", "url", description="The instance URL (JSON output enabled)."),),
        ),
    ]
}


def integration_get(integration_id: str) -> Integration | None:
    """An integration by id, or None."""
    return INTEGRATIONS.get(integration_id)


def integrations_public() -> list[dict[str, Any]]:
    """The public catalogue, in a stable order."""
    return [INTEGRATIONS[key].public_dict() for key in sorted(INTEGRATIONS)]
