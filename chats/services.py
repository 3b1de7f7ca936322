"""Writes and reads of the conversation store, shared by /ws/chat and chat sync (CONTRACT §9)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction

from claraverse.encryption import decrypt, encrypt
from claraverse.errors import ApplicationError, validation_details
from claraverse.ids import new_id
from claraverse.timeutils import isoformat_z

from .models import Chat

logger = logging.getLogger("claraverse.chat")

TITLE_PURPOSE = "chat_title"
MESSAGES_PURPOSE = "chat_messages"
TITLE_FROM_MESSAGE_CHARS = 80


def chat_messages(chat: Chat) -> list[dict[str, Any]]:
    """The decrypted message list of a chat."""
    if not chat.messages_encrypted:
        return []
    return json.loads(decrypt(chat.messages_encrypted, owner_id=chat.user_id, purpose=MESSAGES_PURPOSE))


def chat_title(chat: Chat) -> str:
    """The decrypted title of a chat."""
    if not chat.title_encrypted:
        return ""
    return decrypt(chat.title_encrypted, owner_id=chat.user_id, purpose=TITLE_PURPOSE)


def _store(chat: Chat, *, messages: list[dict[str, Any]] | None = None, title: str | None = None) -> None:
    if messages is not None:
        chat.messages_encrypted = encrypt(
            json.dumps(messages, ensure_ascii=False), owner_id=chat.user_id, purpose=MESSAGES_PURPOSE
        )
    if title is not None:
        chat.title_encrypted = encrypt(title, owner_id=chat.user_id, purpose=TITLE_PURPOSE) if title else ""


def conversation_history(*, user, conversation_id: str) -> list[dict[str, Any]]:
    """The user's messages in one conversation (empty for a new or someone else's id)."""
    chat = Chat.objects.filter(user=user, chat_id=conversation_id).first()
    return chat_messages(chat) if chat else []


def _derived_title(messages: list[dict[str, Any]]) -> str:
    for message in messages:
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            text = " ".join(message["content"].split())
            return text[:TITLE_FROM_MESSAGE_CHARS]
    return ""


def conversation_append(*, user, conversation_id: str, messages: list[dict[str, Any]], model: str = "") -> Chat:
    """Append messages to a conversation (creating it), bumping its version; safe under concurrency."""
    stamped = [
        {**message, "created_at": message.get("created_at") or isoformat_z(datetime.now(UTC))} for message in messages
    ]
    for attempt in range(2):
        try:
            with transaction.atomic():
                chat = Chat.objects.select_for_update().filter(user=user, chat_id=conversation_id).first()
                if chat is None:
                    chat = Chat(user=user, chat_id=conversation_id, version=0)
                history = chat_messages(chat) + stamped
                _store(chat, messages=history, title=None if chat.title_encrypted else _derived_title(history))
                chat.model = model or chat.model
                chat.version += 1
                chat.save()
                return chat
        except IntegrityError:
            # Two first messages of one new conversation raced on the unique (user, chat_id) row.
            if attempt:
                raise
    raise AssertionError("unreachable")


def _stale(chat: Chat) -> ApplicationError:
    return ApplicationError(
        "CONFLICT",
        f"This chat was changed elsewhere (it is now at version {chat.version}); fetch it, merge and retry.",
        details={"current_version": chat.version},
    )


def chat_upsert(*, user, fields: dict[str, Any]) -> tuple[Chat, bool]:
    """Create or update the user's chat from validated fields (only those given change); returns (chat, created)."""
    # `version` is the version the client's copy is based on: lower than the stored one means another
    # device (or /ws/chat) wrote since, and overwriting would lose that write. Missing means no check.
    chat_id = fields.get("id") or new_id("chat")
    for attempt in range(2):
        try:
            with transaction.atomic():
                chat = Chat.objects.select_for_update().filter(user=user, chat_id=chat_id).first()
                created = chat is None
                if created:
                    chat = Chat(user=user, chat_id=chat_id, version=0)
                elif fields.get("version") is not None and fields["version"] < chat.version:
                    raise _stale(chat)
                _store(chat, messages=fields.get("messages"), title=fields.get("title"))
                if "model" in fields:
                    chat.model = fields["model"]
                chat.version += 1
                chat.save()
                return chat, created
        except IntegrityError:
            # Two first writes of one new chat raced on the unique (user, chat_id) row; the second is an update.
            if attempt:
                raise
    raise AssertionError("unreachable")


def chat_delete(*, chat: Chat) -> None:
    """Delete one chat (its history over /ws/chat goes with it)."""
    chat.delete()


def chats_delete_all(*, user) -> int:
    """Delete every chat of the user; returns how many there were."""
    # Counted per model: the total of delete() would also count rows that cascade from a chat.
    _, per_model = Chat.objects.filter(user=user).delete()
    return per_model.get(Chat._meta.label, 0)


def _error_text(details: dict[str, Any]) -> str:
    parts: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            for item in value:
                walk(prefix, item)
        else:
            parts.append(f"{prefix}: {value}" if prefix and prefix != "body" else str(value))

    walk("", details)
    return "; ".join(parts)[:500]


def chats_sync(*, user, chats: list[Any]) -> dict[str, Any]:
    """Upsert many chats, each in its own transaction; answers `{synced, conflicts, failed, chat_ids, results}`."""
    # Never all-or-nothing: one bad or stale chat must not keep a device's other chats from syncing.
    from .serializers import ChatUpsertSerializer

    results: list[dict[str, Any]] = []
    for item in chats:
        given_id = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
        result: dict[str, Any] = {"id": given_id, "status": "failed", "version": None, "error": None}
        results.append(result)
        if not isinstance(item, dict):
            result["error"] = "Each chat must be a JSON object."
            continue
        serializer = ChatUpsertSerializer(data=item)
        if not serializer.is_valid():
            result["error"] = _error_text(validation_details(serializer.errors))
            continue
        try:
            chat, _created = chat_upsert(user=user, fields=serializer.validated_data)
        except ApplicationError as exc:
            if exc.code == "CONFLICT" and "current_version" in exc.details:
                result.update(status="conflict", version=exc.details["current_version"], error=exc.message)
            else:
                result["error"] = exc.message
            continue
        except Exception:
            # Reported per chat rather than failing the batch: the chats before it are already committed.
            logger.exception("chat sync failed for one chat")
            result["error"] = "Internal error while saving this chat."
            continue
        result.update(id=chat.chat_id, status="synced", version=chat.version)
    synced = [result["id"] for result in results if result["status"] == "synced"]
    return {
        "synced": len(synced),
        "conflicts": sum(1 for result in results if result["status"] == "conflict"),
        "failed": sum(1 for result in results if result["status"] == "failed"),
        "chat_ids": synced,
        "results": results,
    }
