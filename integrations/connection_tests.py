"""Connection tests for credentials: one real, harmless call per integration (CONTRACT §8).

Each test takes a credential's decrypted fields and answers `(success, message)`. It never raises for
a peer that is unreachable, refuses or fails: that is a failed test, reported in the message. Messages
are shown to the user and stored with the credential, so they never hold a secret (a webhook URL, a
password, an Authorization value); they come from the same helpers the tools use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from integrations.tools.builtin.common import credential_value
from integrations.tools.builtin.mail import SMTPAccount, smtp_session
from integrations.tools.builtin.messaging import post_discord_message, post_generic_webhook, post_slack_message
from integrations.tools.builtin.search import searxng_search
from integrations.tools.registry import ToolExecutionError

logger = logging.getLogger("claraverse.integrations")

TEST_MESSAGE = "ClaraVerse connection test: this credential works."
TEST_QUERY = "ClaraVerse"
UNEXPECTED_FAILURE = "The connection test failed unexpectedly."

ConnectionTest = Callable[[Mapping[str, Any]], tuple[bool, str]]


def _reported(check: Callable[[Mapping[str, Any]], str]) -> ConnectionTest:
    """Turn a check that returns a success message or raises into one that answers (success, message)."""

    @wraps(check)
    def run(fields: Mapping[str, Any]) -> tuple[bool, str]:
        try:
            return True, check(fields)
        except ToolExecutionError as exc:
            return False, exc.message
        except Exception:
            # The exception text may carry the URL or a password, so it goes to the log only.
            logger.exception("Connection test %s raised an unexpected error", check.__name__)
            return False, UNEXPECTED_FAILURE

    return run


@_reported
def check_slack(fields: Mapping[str, Any]) -> str:
    """Post a short test message to the Slack webhook."""
    status = post_slack_message(credential_value(fields, "webhook_url", "Slack"), {"text": TEST_MESSAGE})
    return f"Slack accepted the test message (HTTP {status})."


@_reported
def check_discord(fields: Mapping[str, Any]) -> str:
    """Post a short test message to the Discord webhook."""
    payload = {"content": TEST_MESSAGE, "allowed_mentions": {"parse": []}}
    status = post_discord_message(credential_value(fields, "webhook_url", "Discord"), payload)
    return f"Discord accepted the test message (HTTP {status})."


@_reported
def check_webhook(fields: Mapping[str, Any]) -> str:
    """POST a ping event to the webhook endpoint."""
    sent_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    payload = {"event": "ping", "data": {"message": "ClaraVerse connection test", "sent_at": sent_at}}
    status, _, _ = post_generic_webhook(fields, payload)
    return f"The endpoint accepted the test event (HTTP {status})."


@_reported
def check_email(fields: Mapping[str, Any]) -> str:
    """Connect to the SMTP server, secure the connection and log in (if a username is set); no mail is sent."""
    account = SMTPAccount.from_credential(fields)
    with smtp_session(account) as client:
        client.noop()
    security = {"starttls": "STARTTLS", "ssl": "TLS", "none": "no encryption"}[account.security]
    login = " and logged in" if account.username else ""
    return f"Connected to {account.where} ({security}){login}."


@_reported
def check_searxng(fields: Mapping[str, Any]) -> str:
    """Run one search on the SearXNG instance."""
    results = searxng_search(credential_value(fields, "base_url", "SearXNG"), TEST_QUERY, max_results=5)
    count = len(results)
    return f"The search worked ({count} result{'' if count == 1 else 's'})."


CONNECTION_TESTS: dict[str, ConnectionTest] = {
    "discord": check_discord,
    "email": check_email,
    "searxng": check_searxng,
    "slack": check_slack,
    "webhook": check_webhook,
}
