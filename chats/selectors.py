"""Reads of synced chats, always scoped to their owner."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from claraverse.errors import ApplicationError

from .models import Chat


def chat_get(*, user, chat_id: str) -> Chat:
    """The user's chat with this client-visible id, or a 404 (also when only another user has that id)."""
    chat = Chat.objects.filter(user=user, chat_id=chat_id).first()
    if chat is None:
        raise ApplicationError("NOT_FOUND", "Chat not found.")
    return chat


def chat_list_changed(*, user, since: datetime | None = None) -> QuerySet[Chat]:
    """The user's chats changed after `since` (all without it), most recently changed first."""
    # Newest first keeps paging safe while chats change: a chat updated between two pages moves to the
    # front, so no unread chat shifts into an already-read page, and it is caught by the next `since`.
    chats = Chat.objects.filter(user=user)
    if since is not None:
        chats = chats.filter(updated_at__gt=since)
    return chats.order_by("-updated_at", "-id")
