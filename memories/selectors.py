"""Reads of memories, always scoped to their owner."""

from __future__ import annotations

from django.db.models import Case, Count, IntegerField, QuerySet, Value, When

from claraverse.encryption import decrypt
from claraverse.errors import ApplicationError

from .models import Memory, MemoryCategory, MemoryImportance

MEMORY_PURPOSE = "memory"
IMPORTANCE_RANK = {MemoryImportance.HIGH: 3, MemoryImportance.MEDIUM: 2, MemoryImportance.LOW: 1}


def memory_content(memory: Memory) -> str:
    """The decrypted content of a memory."""
    return decrypt(memory.content_encrypted, owner_id=memory.user_id, purpose=MEMORY_PURPOSE)


def memory_list(
    *, user, include_archived: bool = False, category: str | None = None, query: str | None = None
) -> QuerySet[Memory] | list[Memory]:
    """The user's memories, newest first, active only unless `include_archived`; `query` is a substring."""
    # Contents are encrypted, so `query` is matched in Python; MEMORY_MAX_PER_USER keeps that bounded.
    memories = Memory.objects.filter(user=user).order_by("-created_at", "-id")
    if not include_archived:
        memories = memories.filter(archived=False)
    if category:
        memories = memories.filter(category=category)
    if not query:
        return memories
    needle = query.casefold()
    return [memory for memory in memories if needle in memory_content(memory).casefold()]


def memory_get(*, user, memory_id: str) -> Memory:
    """The user's memory, or a 404 (also for another user's memory)."""
    memory = Memory.objects.filter(pk=memory_id, user=user).first()
    if memory is None:
        raise ApplicationError("NOT_FOUND", "Memory not found.")
    return memory


def memory_stats(*, user) -> dict:
    """Counts of the user's memories: total, active, archived, and per category and importance (zeros included)."""
    memories = Memory.objects.filter(user=user)
    by_category = {value: 0 for value in MemoryCategory.values}
    by_importance = {value: 0 for value in MemoryImportance.values}
    archived = 0
    for row in memories.values("category", "importance", "archived").annotate(count=Count("id")).order_by():
        by_category[row["category"]] = by_category.get(row["category"], 0) + row["count"]
        by_importance[row["importance"]] = by_importance.get(row["importance"], 0) + row["count"]
        if row["archived"]:
            archived += row["count"]
    total = sum(by_category.values())
    return {
        "total": total,
        "active": total - archived,
        "archived": archived,
        "by_category": by_category,
        "by_importance": by_importance,
    }


def memories_for_prompt(*, user) -> QuerySet[Memory]:
    """The user's active memories, most important first, then most used, then most recently changed."""
    rank = Case(
        *(When(importance=importance, then=Value(value)) for importance, value in IMPORTANCE_RANK.items()),
        default=Value(0),
        output_field=IntegerField(),
    )
    return (
        Memory.objects.filter(user=user, archived=False)
        .annotate(importance_rank=rank)
        .order_by("-importance_rank", "-access_count", "-updated_at", "-id")
    )


def memory_enabled_for(*, user) -> bool:
    """Whether the user lets chat use their memories (`preferences.memory_enabled`, default true)."""
    # Read from the database, not the socket's user object: turning memory off applies to the next
    # message without reconnecting.
    from accounts.models import User

    preferences = User.objects.filter(pk=user.pk).values_list("preferences", flat=True).first()
    if not isinstance(preferences, dict):
        return True
    return preferences.get("memory_enabled", True) is not False
