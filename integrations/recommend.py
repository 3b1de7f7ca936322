"""Tool recommendations for a task: ranked by the configured LLM when one is set, else lexically."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from django.conf import settings

from claraverse.errors import ApplicationError

from .tools import Tool, tool_registry

logger = logging.getLogger("claraverse.tools")

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "every",
        "for",
        "from",
        "i",
        "in",
        "into",
        "is",
        "it",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "please",
        "so",
        "some",
        "that",
        "the",
        "then",
        "this",
        "to",
        "up",
        "us",
        "use",
        "we",
        "with",
        "you",
        "your",
    }
)
# Where a task word matched weighs how much it says about the tool.
WEIGHTS = {"name": 3.0, "keywords": 2.0, "description": 1.0}
RECOMMENDATION_SCHEMA = {
    "type": "object",
    "properties": {
        "recommendations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "score": {"type": "number"}, "reason": {"type": "string"}},
                "required": ["name", "score", "reason"],
            },
        }
    },
    "required": ["recommendations"],
}


def _words(text: str) -> set[str]:
    words = set()
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS:
            continue
        words.add(word)
        # A crude stem so that "messages" meets "message" and "emails" meets "email".
        if len(word) > 4 and word.endswith("s"):
            words.add(word[:-1])
    return words


def _tool_words(tool: Tool) -> dict[str, set[str]]:
    return {
        "name": _words(tool.name.replace("_", " ") + " " + tool.display_name),
        "keywords": _words(" ".join(tool.keywords)),
        "description": _words(tool.description),
    }


def lexical_recommendations(task: str, *, limit: int) -> list[dict[str, Any]]:
    """Rank tools by weighted word overlap with the task; scores from 0 to 1, zero scores left out."""
    task_words = _words(task)
    if not task_words:
        return []
    best_possible = sum(WEIGHTS.values()) * len(task_words)
    ranked = []
    for tool in tool_registry.all():
        fields = _tool_words(tool)
        matched: dict[str, set[str]] = {where: task_words & words for where, words in fields.items()}
        raw = sum(WEIGHTS[where] * len(words) for where, words in matched.items())
        if raw == 0:
            continue
        hits = sorted(set().union(*matched.values()))
        ranked.append(
            {
                "name": tool.name,
                "score": round(min(1.0, raw / best_possible * 2), 3),
                "reason": f"Matches: {', '.join(hits)}.",
            }
        )
    ranked.sort(key=lambda entry: (-entry["score"], entry["name"]))
    return ranked[:limit]


def _llm_recommendations(task: str, *, limit: int, model_id: str, user) -> list[dict[str, Any]]:
    from .llm.answers import parse_json_answer
    from .llm.client import complete_chat
    from .llm.types import LLMRequest

    catalogue = [{"name": tool.name, "description": tool.description} for tool in tool_registry.all()]
    prompt = (
        f"Task: {task}\nTools: {json.dumps(catalogue)}\n"
        f"Pick at most {limit} tools that help with the task. Answer only with JSON "
        '{"recommendations": [{"name", "score" (0 to 1), "reason"}]}, best first.'
    )
    result = complete_chat(
        LLMRequest(
            model_id=model_id,
            messages=[{"role": "user", "content": prompt}],
            response_format="json",
            json_schema=RECOMMENDATION_SCHEMA,
            max_tokens=800,
        ),
        user=user,
        source="system",
    )
    answer = parse_json_answer(result.text)
    recommendations = []
    for entry in answer.get("recommendations", []) if isinstance(answer, dict) else []:
        if not isinstance(entry, dict) or tool_registry.get(str(entry.get("name"))) is None:
            continue  # the model's inventions are dropped
        try:
            score = min(1.0, max(0.0, float(entry.get("score", 0))))
        except (TypeError, ValueError):
            score = 0.0
        recommendations.append(
            {"name": entry["name"], "score": round(score, 3), "reason": str(entry.get("reason", ""))[:300]}
        )
    return recommendations[:limit]


def tools_recommend(*, task: str, limit: int, user) -> list[dict[str, Any]]:
    """Recommendations for `task`: the LLM's when TOOL_RECOMMENDATION_MODEL works, else the lexical ranking."""
    model_id = settings.TOOL_RECOMMENDATION_MODEL
    if model_id:
        try:
            return _llm_recommendations(task, limit=limit, model_id=model_id, user=user)
        except (ApplicationError, ValueError, AttributeError):
            logger.warning("LLM tool recommendation failed; falling back to lexical ranking", exc_info=True)
    return lexical_recommendations(task, limit=limit)
