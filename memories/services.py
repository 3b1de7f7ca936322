"""Memory writes: create (capped per user), update, delete, archive, and their use in a chat prompt."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from claraverse.encryption import encrypt
from claraverse.errors import ApplicationError

from .models import Memory, MemoryCategory, MemoryImportance
from .selectors import MEMORY_PURPOSE, memories_for_prompt, memory_content, memory_enabled_for

DEFAULT_MAX_PER_USER = 2000
DEFAULT_TOKEN_BUDGET = 800
CHARS_PER_TOKEN = 4  # the same rough, provider-neutral estimate chat uses for its history budget
# The shortest line a memory can make ("- [fact] x" and its newline): below this, stop decrypting the rest.
MIN_LINE_CHARS = 11
PROMPT_HEADER = (
    "Things the user asked you to remember, or that you learned about them in earlier conversations. "
    "Use them when relevant; do not mention this list unless asked."
)


def max_memories_per_user() -> int:
    """MEMORY_MAX_PER_USER: how many memories (archived included) one user may keep."""
    return int(getattr(settings, "MEMORY_MAX_PER_USER", DEFAULT_MAX_PER_USER))


def _encrypted(user_id: str, content: str) -> str:
    return encrypt(content, owner_id=user_id, purpose=MEMORY_PURPOSE)


@transaction.atomic
def memory_create(
    *,
    user,
    content: str,
    category: str = MemoryCategory.FACT,
    importance: str = MemoryImportance.MEDIUM,
) -> Memory:
    """Store a memory; QUOTA_EXCEEDED once the user holds MEMORY_MAX_PER_USER of them."""
    from accounts.models import User

    # Locking the owner row serialises one user's creates, so parallel requests cannot overshoot the cap.
    User.objects.select_for_update().filter(pk=user.pk).exists()
    limit = max_memories_per_user()
    used = Memory.objects.filter(user=user).count()
    if used >= limit:
        raise ApplicationError(
            "QUOTA_EXCEEDED",
            f"Memory limit reached ({limit} memories); delete some to add more.",
            details={"limit": limit, "used": used, "reset_at": None},
        )
    return Memory.objects.create(
        user=user, content_encrypted=_encrypted(user.pk, content), category=category, importance=importance
    )


def memory_update(*, memory: Memory, fields: dict[str, Any]) -> Memory:
    """Change the fields given (`content`, `category`, `importance`)."""
    fields = dict(fields)
    if "content" in fields:
        memory.content_encrypted = _encrypted(memory.user_id, fields.pop("content"))
    for field, value in fields.items():
        setattr(memory, field, value)
    memory.save()
    return memory


def memory_delete(*, memory: Memory) -> None:
    """Delete a memory."""
    memory.delete()


def memory_archive(*, memory: Memory) -> Memory:
    """Archive a memory (chat stops using it); archiving twice keeps the first archived_at."""
    if not memory.archived:
        memory.archived = True
        memory.archived_at = timezone.now()
        memory.save(update_fields=["archived", "archived_at", "updated_at"])
    return memory


def memory_unarchive(*, memory: Memory) -> Memory:
    """Bring an archived memory back into use."""
    if memory.archived:
        memory.archived = False
        memory.archived_at = None
        memory.save(update_fields=["archived", "archived_at", "updated_at"])
    return memory


def memories_record_access(*, memory_ids: list[str]) -> None:
    """Count one use of each memory, atomically (concurrent chats must not lose counts)."""
    if memory_ids:
        # update() leaves updated_at alone: being read is not a change of the memory.
        Memory.objects.filter(pk__in=memory_ids).update(
            access_count=F("access_count") + 1, last_accessed_at=timezone.now()
        )


def _prompt_line(memory: Memory, content: str) -> str:
    text = " ".join(content.split())
    return f"- [{memory.category}] {text}"


def memory_prompt_for_chat(*, user, budget_tokens: int | None = None) -> str:
    """The system message of the user's active memories within MEMORY_TOKEN_BUDGET ("" if none); counts each use."""
    if user is None or not memory_enabled_for(user=user):
        return ""
    if budget_tokens is None:
        budget_tokens = int(getattr(settings, "MEMORY_TOKEN_BUDGET", DEFAULT_TOKEN_BUDGET))
    remaining = budget_tokens * CHARS_PER_TOKEN - len(PROMPT_HEADER) - 1
    lines: list[str] = []
    used_ids: list[str] = []
    candidates = memories_for_prompt(user=user).only("id", "user_id", "category", "content_encrypted")
    for memory in candidates.iterator(chunk_size=100):
        if remaining < MIN_LINE_CHARS:
            break
        line = _prompt_line(memory, memory_content(memory))
        if len(line) + 1 > remaining:
            # Skipped, not a stop: one long memory must not crowd out all the shorter ones after it.
            continue
        lines.append(line)
        used_ids.append(memory.pk)
        remaining -= len(line) + 1
    if not lines:
        return ""
    memories_record_access(memory_ids=used_ids)
    return "\n".join([PROMPT_HEADER, *lines])
