"""`send_slack`, `send_discord` and `send_webhook`: post a message to a URL held in the user's credential.

The URL is the secret (anyone who has a Slack or Discord webhook URL can post with it), so it never
appears in a result or an error message: errors name the service and the status, and anything a
server echoes back is redacted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from claraverse.outbound import OutboundResponse
from integrations.tools.builtin.common import (
    clip,
    credential_value,
    guarded_request,
    peer_excerpt,
    redact,
    url_secrets,
)
from integrations.tools.registry import Tool, ToolContext, ToolExecutionError

# Webhook answers are tiny ("ok", an empty 204, a short JSON ack); a big one is not worth reading.
MAX_WEBHOOK_RESPONSE_BYTES = 256 * 1024
MAX_WEBHOOK_BODY_CHARS = 2000
# Slack's documented limit for a message's text; longer text is cut by Slack itself.
MAX_SLACK_TEXT = 40_000
MAX_DISCORD_CONTENT = 2000
MAX_DISCORD_USERNAME = 80
# Slack's error answers are bare tokens such as "invalid_payload" or "no_service": safe and useful to repeat.
_SLACK_ERROR_TOKEN = re.compile(r"^[a-z_]{1,64}$")


def _secrets(url: str, headers: Mapping[str, str]) -> list[str]:
    # A header value and, for "Bearer <token>", the token alone: an endpoint may echo either.
    values = [part for value in headers.values() for part in (value, value.partition(" ")[2])]
    return [*url_secrets(url), *values]


def post_webhook(url: str, payload: Any, *, service: str, headers: Mapping[str, str] | None = None) -> OutboundResponse:
    """POST `payload` as JSON to a credential's URL; failures become errors that name `service`, never the URL."""
    return guarded_request(
        "POST",
        url,
        failure=f"Could not reach {service}",
        secrets=_secrets(url, headers or {}),
        json=payload,
        headers=headers,
        max_bytes=MAX_WEBHOOK_RESPONSE_BYTES,
        # A webhook that redirects is misconfigured; following it would turn the POST into a GET elsewhere.
        allow_redirects=False,
    )


def post_slack_message(webhook_url: str, payload: dict[str, Any]) -> int:
    """Post one message to a Slack incoming webhook; returns the status, raises ToolExecutionError if refused."""
    response = post_webhook(webhook_url, payload, service="Slack")
    if not response.is_success:
        token = response.text.strip()
        reason = f": {token}" if _SLACK_ERROR_TOKEN.match(token) else ""
        raise ToolExecutionError(f"Slack refused the message (HTTP {response.status_code}{reason}).")
    return response.status_code


def post_discord_message(webhook_url: str, payload: dict[str, Any]) -> int:
    """Post one message to a Discord webhook; returns the status, raises ToolExecutionError if refused."""
    response = post_webhook(webhook_url, payload, service="Discord")
    if response.status_code == 429:
        raise ToolExecutionError("Discord is rate-limiting this webhook (HTTP 429); try again in a few seconds.")
    if not response.is_success:
        reason = ""
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("message"), str):
            reason = f": {peer_excerpt(answer['message'], url_secrets(webhook_url))}"
        raise ToolExecutionError(f"Discord refused the message (HTTP {response.status_code}{reason}).")
    return response.status_code


def webhook_headers(fields: Mapping[str, Any]) -> dict[str, str]:
    """The request headers a webhook credential asks for (its optional Authorization value)."""
    authorization = fields.get("authorization")
    if isinstance(authorization, str) and authorization.strip():
        return {"Authorization": authorization.strip()}
    return {}


def post_generic_webhook(fields: Mapping[str, Any], payload: Any) -> tuple[int, str, bool]:
    """POST `payload` to a webhook credential's URL; returns (status, body excerpt, truncated) or raises if not 2xx."""
    url = credential_value(fields, "url", "webhook")
    headers = webhook_headers(fields)
    response = post_webhook(url, payload, service="the webhook endpoint", headers=headers)
    secrets = _secrets(url, headers)
    if not response.is_success:
        excerpt = peer_excerpt(response.text, secrets)
        detail = f": {excerpt}" if excerpt else ""
        raise ToolExecutionError(f"The webhook endpoint answered HTTP {response.status_code}{detail}")
    # The endpoint may echo the request, Authorization header included; the model must not see it.
    body, truncated = clip(redact(response.text, secrets), MAX_WEBHOOK_BODY_CHARS)
    return response.status_code, body, truncated


def _send_slack(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    webhook_url = credential_value(context.credential_fields("slack"), "webhook_url", "Slack")
    payload: dict[str, Any] = {"text": arguments["text"]}
    if "unfurl_links" in arguments:
        payload["unfurl_links"] = arguments["unfurl_links"]
    return {"sent": True, "status": post_slack_message(webhook_url, payload)}


def _send_discord(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    webhook_url = credential_value(context.credential_fields("discord"), "webhook_url", "Discord")
    payload: dict[str, Any] = {"content": arguments["content"]}
    if arguments.get("username"):
        payload["username"] = arguments["username"]
    if not arguments.get("allow_mentions", False):
        # Text written by a model must not ping @everyone or a role unless the user asked for it.
        payload["allowed_mentions"] = {"parse": []}
    return {"sent": True, "status": post_discord_message(webhook_url, payload)}


def _send_webhook(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    has_payload = "payload" in arguments
    if has_payload == ("data" in arguments) or (has_payload and "event" in arguments):
        # Checked here rather than with oneOf: several providers refuse combinators at the top of a tool schema.
        raise ToolExecutionError("Give either 'payload', or 'data' with an optional 'event', but not both.")
    if has_payload:
        payload = arguments["payload"]
    else:
        payload = {"data": arguments["data"]}
        if arguments.get("event"):
            payload = {"event": arguments["event"], **payload}
    status, body, truncated = post_generic_webhook(context.credential_fields("webhook"), payload)
    return {"status": status, "body": body, "truncated": truncated}


SEND_SLACK = Tool(
    name="send_slack",
    display_name="Send Slack Message",
    description=(
        "Post a message to the Slack channel of the user's Slack incoming webhook. Supports Slack mrkdwn: *bold*, "
        "_italic_, `code`, <https://example.com|links>."
    ),
    category="communication",
    icon="MessageSquare",
    parameters={
        "type": "object",
        "properties": {
            "text": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_SLACK_TEXT,
                "description": "The message text (Slack mrkdwn).",
            },
            "unfurl_links": {
                "type": "boolean",
                "description": "Whether Slack shows previews of the links in the text (Slack's default if omitted).",
            },
        },
        "required": ["text"],
        "additionalProperties": False,
    },
    execute=_send_slack,
    requires_integration="slack",
    keywords=("slack", "message", "notify", "notification", "channel", "post", "chat", "alert", "team", "send"),
)

SEND_DISCORD = Tool(
    name="send_discord",
    display_name="Send Discord Message",
    description=(
        "Post a message to the Discord channel of the user's Discord webhook. Supports Discord markdown. "
        f"At most {MAX_DISCORD_CONTENT} characters."
    ),
    category="communication",
    icon="MessageCircle",
    parameters={
        "type": "object",
        "properties": {
            "content": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_DISCORD_CONTENT,
                "description": f"The message text, at most {MAX_DISCORD_CONTENT} characters.",
            },
            "username": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_DISCORD_USERNAME,
                "description": "Optional name shown as the sender instead of the webhook's own name.",
            },
            "allow_mentions": {
                "type": "boolean",
                "default": False,
                "description": "Let @everyone, @here, role and user mentions in the text notify people (default no).",
            },
        },
        "required": ["content"],
        "additionalProperties": False,
    },
    execute=_send_discord,
    requires_integration="discord",
    keywords=("discord", "message", "notify", "notification", "channel", "post", "chat", "alert", "server", "send"),
)

SEND_WEBHOOK = Tool(
    name="send_webhook",
    display_name="Send Webhook",
    description=(
        "POST JSON to the user's configured webhook endpoint (e.g. Zapier, n8n, Make or their own service). Send "
        "either {'event': ..., 'data': ...} by giving 'data' (and optionally 'event'), or any JSON object as "
        "'payload'. Returns the endpoint's status and answer."
    ),
    category="communication",
    icon="Webhook",
    parameters={
        "type": "object",
        "properties": {
            "event": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "description": "Optional event name sent with 'data', e.g. 'order.created'.",
            },
            "data": {"description": "The data to send (any JSON value), wrapped as {'event': ..., 'data': ...}."},
            "payload": {
                "type": "object",
                "description": "Instead of event and data: the exact JSON object to send.",
            },
        },
        "additionalProperties": False,
    },
    execute=_send_webhook,
    requires_integration="webhook",
    keywords=("webhook", "post", "json", "zapier", "n8n", "make", "integration", "trigger", "notify", "automation"),
)
