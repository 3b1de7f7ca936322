"""The JSON parser every endpoint uses, and the strict JSON reading the WebSockets share with it."""

import json
import math
import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .errors import ApplicationError

# Deeper than any real request needs, and shallow enough that nothing downstream (JSON fields and
# encoders, template rendering, validation messages; all recursive) can run out of stack on it.
MAX_JSON_DEPTH = 100
TOO_DEEP_MESSAGE = f"JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)."
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259). Accepted, they would be stored and then break every
    # later answer that renders them (the JSON renderer refuses them: a 500 on each read).
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise ValueError(f"number {text[:32]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Which of two equal keys wins differs between parsers (a proxy may check one, we would use the
    # other); refusing them leaves no doubt.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"duplicate key {duplicate[:64]!r}")
    return result


def _deeper_than(container: dict | list, limit: int) -> bool:
    # Iterative, so that measuring the depth cannot itself overflow the stack.
    stack = [(container, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _unstorable_text(value: Any) -> str | None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "a string holds NUL (\\u0000), which no text column can store"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a \\u escape gives a lone surrogate, which is not valid Unicode text"
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def strict_json_loads(text: str) -> Any:
    """Parse JSON text; ValueError for NaN/Infinity, 1e999, duplicate keys, NUL, lone surrogates, deep nesting."""
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
        )
    except RecursionError:
        raise ValueError(TOO_DEEP_MESSAGE) from None
    if isinstance(value, dict | list) and _deeper_than(value, MAX_JSON_DEPTH):
        raise ValueError(TOO_DEEP_MESSAGE)
    # "\ud800" and "\u0000" are valid JSON escapes but no storable text: a lone surrogate cannot be
    # encoded as UTF-8 (database, encryption, a socket frame) and PostgreSQL refuses NUL in text and
    # jsonb, so either would fail later as a 500. Only walked when such an escape appears at all (a
    # valid pair such as "\ud83d\ude00" decodes to one character).
    if _UNSTORABLE_ESCAPE.search(text) and (problem := _unstorable_text(value)):
        raise ValueError(problem)
    return value


class JsonBodyParser(JSONParser):
    """JSON bodies with a size cap, read strictly (`strict_json_loads`): anything refused is a 400, not a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ApplicationError("PAYLOAD_TOO_LARGE", "Request body too large.", details={"max_bytes": limit})
        if not raw:
            raise ParseError("Request body is empty; send a JSON object.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return strict_json_loads(raw.decode(encoding))
        except ValueError as exc:  # UnicodeDecodeError included
            message = str(exc)
            raise ParseError(message if message == TOO_DEEP_MESSAGE else f"JSON parse error: {message}") from None
