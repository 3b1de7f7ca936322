"""`remember`: store a memory for the caller, which later chats are given (CONTRACT §9)."""

from __future__ import annotations

from typing import Any

from integrations.tools.registry import Tool, ToolContext, ToolExecutionError

CONTENT_MAX_CHARS = 5000
CATEGORIES = ["preference", "fact", "context", "instruction", "personal_info"]
IMPORTANCES = ["low", "medium", "high"]


def _execute(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    # Imported here: the tool registry is built at import time, possibly before the app registry is ready.
    from claraverse.errors import ApplicationError
    from memories.selectors import memory_enabled_for
    from memories.services import memory_create

    user = context.user
    if user is None or not getattr(user, "is_authenticated", False):
        raise ToolExecutionError("remember needs a signed-in user: memories belong to one person.")
    content = arguments["content"].strip()
    if not content:
        raise ToolExecutionError("Nothing to remember: content is empty.")
    if not memory_enabled_for(user=user):
        raise ToolExecutionError("The user has turned memory off; nothing was stored.")
    category = arguments.get("category") or "fact"
    importance = arguments.get("importance") or "medium"
    try:
        memory = memory_create(user=user, content=content, category=category, importance=importance)
    except ApplicationError as exc:
        if exc.code == "QUOTA_EXCEEDED":
            raise ToolExecutionError(f"{exc.message} Nothing was stored.")
        raise
    return {"id": memory.id, "content": content, "category": memory.category, "importance": memory.importance}


REMEMBER = Tool(
    name="remember",
    display_name="Remember",
    description=(
        "Save something about the user to long-term memory so that future conversations know it: a preference, "
        "a fact, context, a standing instruction or personal information. Use it when the user asks you to "
        "remember something or states something lasting about themselves; write one self-contained sentence."
    ),
    category="utilities",
    icon="Brain",
    parameters={
        "type": "object",
        "properties": {
            "content": {
                "type": "string",
                "minLength": 1,
                "maxLength": CONTENT_MAX_CHARS,
                "description": "What to remember, e.g. 'The user prefers concise answers.'",
            },
            "category": {
                "type": "string",
                "enum": CATEGORIES,
                "description": "Kind of memory. Defaults to 'fact'.",
            },
            "importance": {
                "type": "string",
                "enum": IMPORTANCES,
                "description": "How much it matters in future chats. Defaults to 'medium'.",
            },
        },
        "required": ["content"],
        "additionalProperties": False,
    },
    execute=_execute,
    keywords=("remember", "memory", "memorize", "note", "preference", "save", "recall", "forget"),
)
