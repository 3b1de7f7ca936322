"""Writes and reads of the conversation store (shared by /ws/chat and, later, chat sync)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction

from claraverse.encryption import decrypt, encrypt
from claraverse.timeutils import isoformat_z

from .models import Chat

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
