"""API keys, external triggers (with idempotency) and signed webhook callbacks (CONTRACT §6)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from claraverse.encryption import decrypt, encrypt
from claraverse.errors import ApplicationError

from .models import ApiKey, IdempotentTrigger, WebhookDelivery

logger = logging.getLogger("claraverse.apikeys")

KEY_PREFIX = "cv_live_"
KEY_RANDOM_BYTES = 32  # 43 URL-safe characters after the prefix
DISPLAY_PREFIX_CHARS = len(KEY_PREFIX) + 6
SCOPES = ("trigger", "upload")
WEBHOOK_SECRET_PURPOSE = "webhook_secret"  # noqa: S105 - an encryption scope label, not a secret
IDEMPOTENCY_WINDOW = timedelta(hours=24)
LAST_USED_WRITE_INTERVAL = timedelta(seconds=60)


def hash_key(raw_key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def key_create(*, user, name: str, scopes: list[str], agent_ids: list[str], expires_at=None) -> tuple[ApiKey, str, str]:
    """Create a key; returns it with the full key and webhook secret, which are never shown again."""
    raw_key = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
    webhook_secret = "whsec_" + secrets.token_urlsafe(32)
    key = ApiKey(
        user=user,
        name=name,
        prefix=raw_key[:DISPLAY_PREFIX_CHARS],
        key_hash=hash_key(raw_key),
        scopes=sorted(set(scopes)),
        agent_ids=list(dict.fromkeys(agent_ids)),
        expires_at=expires_at,
    )
    key.webhook_secret_encrypted = encrypt(webhook_secret, owner_id=str(user.pk), purpose=WEBHOOK_SECRET_PURPOSE)
    key.save()
    return key, raw_key, webhook_secret


def key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a key (idempotent: the first revocation time is kept)."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def key_delete(*, key: ApiKey) -> None:
    """Delete a key; executions it started keep their history."""
    key.delete()


def key_authenticate(raw_key: str) -> ApiKey:
    """The live key for a raw `X-API-Key` value; unknown, revoked or expired is a 401."""
    key = None
    if raw_key.startswith(KEY_PREFIX) and len(raw_key) < 200:
        key = ApiKey.objects.select_related("user").filter(key_hash=hash_key(raw_key)).first()
    now = timezone.now()
    if key is None or key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        raise ApplicationError("UNAUTHORIZED", "API key is invalid, revoked or expired.")
    if not key.user.is_active:
        raise ApplicationError("UNAUTHORIZED", "API key is invalid, revoked or expired.")
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_WRITE_INTERVAL:
        # Written at most once a minute: a busy integration must not turn every call into a write.
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def key_require_scope(key: ApiKey, scope: str) -> None:
    """403 unless the key carries `scope`."""
    if scope not in key.scopes:
        raise ApplicationError("FORBIDDEN", f"This API key lacks the '{scope}' scope.")


def key_require_agent(key: ApiKey, agent_id: str) -> None:
    """403 when the key is limited to other agents."""
    if key.agent_ids and agent_id not in key.agent_ids:
        raise ApplicationError("FORBIDDEN", "This API key may not trigger this agent.")


def webhook_secret(key: ApiKey) -> str:
    """The key's signing secret (`whsec_...`)."""
    return decrypt(key.webhook_secret_encrypted, owner_id=str(key.user_id), purpose=WEBHOOK_SECRET_PURPOSE)


# --- Trigger ------------------------------------------------------------------------------------


def _accepted(execution) -> dict[str, Any]:
    return {"execution_id": execution.id, "status": "pending", "message": "Execution started"}


def trigger_agent(
    *, key: ApiKey, agent_id: str, input: Any, webhook_url: str | None, idempotency_key: str | None
) -> dict[str, Any]:
    """Start an execution for an API caller; with an Idempotency-Key a retry within 24 h gets the first answer."""
    from agents.models import Agent
    from executions.models import ExecutionTrigger
    from executions.services import execution_create

    key_require_scope(key, "trigger")
    agent = Agent.objects.filter(pk=agent_id, user=key.user).first()
    if agent is None:
        raise ApplicationError("NOT_FOUND", "Agent not found.")
    key_require_agent(key, agent.id)
    if idempotency_key:
        previous = IdempotentTrigger.objects.filter(
            api_key=key, idempotency_key=idempotency_key, created_at__gt=timezone.now() - IDEMPOTENCY_WINDOW
        ).first()
        if previous is not None:
            return previous.response
        IdempotentTrigger.objects.filter(api_key=key, idempotency_key=idempotency_key).delete()  # expired one
    try:
        with transaction.atomic():
            execution = execution_create(
                user=key.user,
                agent=agent,
                trigger=ExecutionTrigger.API,
                input=input,
                enqueue=False,
                api_key=key,
                webhook_url=webhook_url or "",
            )
            response = _accepted(execution)
            if idempotency_key:
                # The unique row makes concurrent retries with one key wait here and then lose.
                IdempotentTrigger.objects.create(
                    api_key=key, idempotency_key=idempotency_key, agent_id=agent.id, response=response
                )
            from executions.services import execution_enqueue

            execution_enqueue(execution_id=execution.id)
    except IntegrityError:
        previous = IdempotentTrigger.objects.filter(api_key=key, idempotency_key=idempotency_key).first()
        if previous is None:
            raise
        return previous.response
    return response


def idempotency_records_prune() -> int:
    """Forget idempotency answers older than the 24 h window."""
    deleted, _ = IdempotentTrigger.objects.filter(created_at__lt=timezone.now() - IDEMPOTENCY_WINDOW).delete()
    return deleted


# --- Webhook callbacks ----------------------------------------------------------------------------


def sign_payload(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the whole `whsec_...` string as the key."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_payload(execution) -> dict[str, Any]:
    """`{event, execution}` with the execution exactly as GET /api/executions/:id shows it."""
    from executions.serializers import ExecutionDetailSerializer

    event = "execution.completed" if execution.status == "completed" else "execution.failed"
    return {"event": event, "execution": ExecutionDetailSerializer(execution).data}


def webhooks_requeue_lost() -> int:
    """Enqueue the first attempt of callbacks that never had one; how many.

    `webhook_schedule` enqueues it when the execution ends, but only logs a broker that is down at that
    moment. An ended execution with a webhook and no recorded attempt after WEBHOOK_REQUEUE_SECONDS
    lost that message; executions older than a day are left alone. A message that was only slow is
    harmless to repeat: an attempt already recorded is never made again.
    """
    from django.db.models import Exists, OuterRef

    from executions.models import FINISHED_STATUSES, Execution

    from .tasks import deliver_webhook

    now = timezone.now()
    lost = list(
        Execution.objects.filter(
            created_at__gt=now - timedelta(days=1),  # the indexed bound
            status__in=FINISHED_STATUSES,
            completed_at__lt=now - timedelta(seconds=settings.WEBHOOK_REQUEUE_SECONDS),
            api_key__isnull=False,
        )
        .exclude(webhook_url="")
        .filter(~Exists(WebhookDelivery.objects.filter(execution=OuterRef("pk"))))
        .values_list("pk", flat=True)[:1000]
    )
    sent = 0
    for execution_id in lost:
        try:
            deliver_webhook.delay(execution_id, 1)
        except Exception:  # the broker is still down: the rest wait for the next run
            logger.warning("could not enqueue the webhook of execution %s; next run", execution_id, exc_info=True)
            break
        sent += 1
    if sent:
        logger.warning("re-enqueued %d lost webhook callbacks", sent)
    return sent


def webhook_deliver(*, execution_id: str, attempt: int) -> bool:
    """POST the signed callback once; record the attempt. True when the receiver answered 2xx."""
    from claraverse.outbound import OutboundError, outbound_request
    from executions.models import Execution

    execution = Execution.objects.select_related("api_key").filter(pk=execution_id).first()
    if execution is None or not execution.webhook_url or execution.api_key is None:
        return True  # nothing (left) to deliver to
    if WebhookDelivery.objects.filter(execution=execution, attempt=attempt).exists():
        return True  # a redelivered task: this attempt already happened
    body = json.dumps(webhook_payload(execution), separators=(",", ":"), default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "ClaraVerse-Webhooks/1",
        "X-ClaraVerse-Signature": sign_payload(webhook_secret(execution.api_key), body),
        "X-ClaraVerse-Delivery": f"{execution.id}:{attempt}",
    }
    status_code, error = None, ""
    try:
        response = outbound_request(
            "POST",
            execution.webhook_url,
            headers=headers,
            data=body,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            # The whole attempt, not each wait: a receiver dripping its answer byte by byte would otherwise hold a
            # worker thread for connect + read timeouts (twice the setting) on every attempt.
            total_timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            allow_redirects=False,
            max_bytes=64 * 1024,
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"Receiver answered {status_code}."
    except OutboundError as exc:
        error = exc.message
    WebhookDelivery.objects.create(execution=execution, attempt=attempt, status_code=status_code, error=error)
    return not error


def webhook_retry_delay(attempt: int) -> int:
    """Seconds before the attempt after `attempt`: exponential from WEBHOOK_RETRY_BASE_SECONDS."""
    return settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1)


def webhook_schedule(execution) -> None:
    """Queue the first callback of an execution that just ended, if it asked for one."""
    if not execution.webhook_url:
        return
    from .tasks import deliver_webhook

    def send() -> None:
        # Called once the execution's final status is saved: a broker outage must not turn into an exception in
        # the worker, whose error handling would then overwrite that status with a failure.
        try:
            deliver_webhook.delay(execution.id, 1)
        except Exception:
            logger.error("could not enqueue the webhook of execution %s", execution.id, exc_info=True)

    transaction.on_commit(send)
