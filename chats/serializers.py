"""Chat sync shapes and input validation (CONTRACT §9)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from claraverse.pagination import PageParamsSerializer
from claraverse.serializers import StrictInputSerializer

from .models import Chat
from .services import chat_messages, chat_title

# The same ids /ws/chat accepts as `conversation_id`, so a synced chat can be continued there.
CHAT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,200}$"
# `/api/chats/sync` is a route, so a chat by that id could never be read or deleted.
RESERVED_CHAT_IDS = frozenset({"sync"})
TITLE_MAX_CHARS = 1000
BULK_SYNC_MAX_CHATS = 100  # fixed by CONTRACT §9
DEFAULT_MAX_MESSAGES = 5000
DEFAULT_MAX_MESSAGES_BYTES = 1024 * 1024

MESSAGES_FIELD = serializers.ListField(child=serializers.DictField())


def max_messages() -> int:
    """CHAT_SYNC_MAX_MESSAGES: how many messages one synced chat may hold."""
    return int(getattr(settings, "CHAT_SYNC_MAX_MESSAGES", DEFAULT_MAX_MESSAGES))


def max_messages_bytes() -> int:
    """CHAT_SYNC_MAX_MESSAGES_BYTES: the largest JSON encoding (UTF-8 bytes) of one synced chat's messages."""
    return int(getattr(settings, "CHAT_SYNC_MAX_MESSAGES_BYTES", DEFAULT_MAX_MESSAGES_BYTES))


class ChatSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="chat_id")
    title = serializers.SerializerMethodField()
    messages = serializers.SerializerMethodField()

    class Meta:
        model = Chat
        fields = ["id", "title", "messages", "model", "created_at", "updated_at", "version"]

    def get_title(self, chat: Chat) -> str:
        return chat_title(chat)

    @extend_schema_field(MESSAGES_FIELD)
    def get_messages(self, chat: Chat) -> list[dict[str, Any]]:
        return chat_messages(chat)


class ChatUpsertSerializer(StrictInputSerializer):
    """One chat to create or update; on an update only the fields sent change."""

    id = serializers.RegexField(
        CHAT_ID_PATTERN,
        required=False,
        help_text="The chat's id (letters, digits, `_ . : -`, at most 200). Missing: the server makes a `chat_` id.",
    )
    title = serializers.CharField(
        max_length=TITLE_MAX_CHARS, required=False, allow_blank=True, allow_null=True, trim_whitespace=False
    )
    messages = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="JSON objects; those with a `role` and a string `content` are the history /ws/chat continues.",
    )
    model = serializers.CharField(max_length=200, required=False, allow_blank=True, allow_null=True)
    version = serializers.IntegerField(
        min_value=0,
        # The stored version is a 32-bit column; a larger one is no version this chat can have been at.
        max_value=2_147_483_647,
        required=False,
        allow_null=True,
        help_text="The version this write is based on; lower than the stored one is a 409. Missing: no check.",
    )
    created_at = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, help_text="Ignored: set by the server."
    )
    updated_at = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, help_text="Ignored: set by the server."
    )

    def validate_id(self, value: str) -> str:
        if value in RESERVED_CHAT_IDS:
            raise serializers.ValidationError(f"'{value}' is reserved.")
        return value

    def validate_title(self, value: str | None) -> str:
        return value or ""

    def validate_model(self, value: str | None) -> str:
        return value or ""

    def validate_messages(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        limit = max_messages()
        if len(value) > limit:
            raise serializers.ValidationError(f"At most {limit} messages.")
        limit_bytes = max_messages_bytes()
        if len(json.dumps(value, ensure_ascii=False).encode("utf-8")) > limit_bytes:
            raise serializers.ValidationError(f"Must encode to at most {limit_bytes} bytes of JSON.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Accepted so that a chat as the API returns it can be sent back unchanged; the server owns them.
        attrs.pop("created_at", None)
        attrs.pop("updated_at", None)
        return attrs


class ChatBulkSyncSerializer(StrictInputSerializer):
    chats = serializers.ListField(
        child=serializers.JSONField(),
        max_length=BULK_SYNC_MAX_CHATS,
        help_text=f"At most {BULK_SYNC_MAX_CHATS} chats, each shaped as the body of `POST /api/chats`.",
    )


class ChatSyncResultSerializer(serializers.Serializer):
    id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["synced", "conflict", "failed"])
    version = serializers.IntegerField(allow_null=True, help_text="The new version, or the current one on a conflict.")
    error = serializers.CharField(allow_null=True)


class ChatBulkSyncResponseSerializer(serializers.Serializer):
    synced = serializers.IntegerField()
    conflicts = serializers.IntegerField()
    failed = serializers.IntegerField()
    chat_ids = serializers.ListField(child=serializers.CharField(), help_text="The ids of the chats synced.")
    results = ChatSyncResultSerializer(many=True)


class ChatSyncParamsSerializer(PageParamsSerializer):
    since = serializers.DateTimeField(
        required=False, help_text="ISO 8601 time; only chats changed after it (use a previous `synced_at`)."
    )


class ChatSyncListSerializer(serializers.Serializer):
    chats = ChatSerializer(many=True)
    total = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    synced_at = serializers.DateTimeField(help_text="Server time of this answer: the next `since`.")


class ChatDeleteAllSerializer(serializers.Serializer):
    deleted = serializers.IntegerField()
