"""The tool registry: what tools exist, how they are described, and how one call is run safely.

A tool is plain data plus one function. The registry is the only way tools are run: it refuses
unknown names, validates arguments against the tool's JSON Schema (Draft 2020-12), turns every
failure into a `ToolOutcome` with a message that is safe to show a user or a model, and caps the
size of what goes back to the model.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from integrations.llm.types import ToolSpec

logger = logging.getLogger("claraverse.tools")

# A result is fed back to the model as a tool message, so it must stay far below any context window.
# A constant rather than a setting: it is part of what a tool call means, not a deployment knob.
MAX_RESULT_BYTES = 32 * 1024

# OpenAI-style function names are [a-zA-Z0-9_-]{1,64}; we keep to the lowercase snake_case subset.
TOOL_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

# Display names of the categories tools are grouped under; unknown ids fall back to a title-cased id.
CATEGORY_NAMES: dict[str, str] = {
    "communication": "Communication",
    "data_sources": "Data Sources",
    "documents": "Documents",
    "utilities": "Utilities",
    "web": "Web",
}

GENERIC_FAILURE = "The tool '{name}' failed unexpectedly."
UNENCODABLE_RESULT = "The tool '{name}' returned a result that could not be encoded as JSON."

# Each argument error message embeds the offending value; a model can send megabytes of it.
_MAX_ERROR_MESSAGE_CHARS = 300


class ToolError(Exception):
    """Base of every tool error; `message` is safe to show to a user or a model."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ToolRegistrationError(ToolError):
    """A tool could not be registered (for example, its name is already taken)."""


class ToolNotFound(ToolError):
    """No tool of that name is registered."""

    def __init__(self, name: str):
        super().__init__(f"Unknown tool '{name}'.")
        self.name = name


class ToolArgumentError(ToolError):
    """Arguments do not match the tool's schema; `errors` lists each problem as {path, message}."""

    def __init__(self, tool_name: str, errors: list[dict[str, str]]):
        listed = "; ".join(f"{error['path']}: {error['message']}" for error in errors)
        super().__init__(f"Invalid arguments for tool '{tool_name}': {listed}")
        self.tool_name = tool_name
        self.errors = errors


class ToolExecutionError(ToolError):
    """Raised by a tool to fail with a message that is safe to show (never a secret or a traceback)."""


@dataclass(frozen=True)
class ToolContext:
    """Who a tool runs for and how it reaches their credentials; new fields get defaults."""

    user: Any = None
    credential_id: str | None = None
    # Given an integration id, returns the decrypted fields of the credential to use for this call.
    # Injected by the caller so that tools never query credentials (or the database) themselves.
    credentials: Callable[[str], Mapping[str, Any]] | None = None

    def credential_fields(self, integration_id: str) -> Mapping[str, Any]:
        """The decrypted credential fields for `integration_id`, or a ToolExecutionError if none is available."""
        if self.credentials is None:
            raise ToolExecutionError(f"This tool needs a configured '{integration_id}' credential.")
        return self.credentials(integration_id)


ToolFunction = Callable[[dict[str, Any], ToolContext], Any]


@dataclass(frozen=True)
class Tool:
    """A tool the model or a workflow can call: its public description and the function that runs it."""

    name: str
    display_name: str
    description: str
    category: str
    icon: str
    parameters: dict[str, Any]
    execute: ToolFunction
    requires_integration: str | None = None
    keywords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Checked at import time so that a malformed tool definition fails loudly at start-up,
        # not as a confusing model error the first time someone calls it.
        if not TOOL_NAME_PATTERN.match(self.name):
            raise ToolRegistrationError(f"Invalid tool name {self.name!r}: use lowercase snake_case, at most 64 chars.")
        if not isinstance(self.parameters, dict) or self.parameters.get("type") != "object":
            raise ToolRegistrationError(f"Tool '{self.name}': parameters must be a JSON Schema of type 'object'.")
        try:
            Draft202012Validator.check_schema(self.parameters)
        except SchemaError as exc:
            raise ToolRegistrationError(f"Tool '{self.name}': invalid parameters schema: {exc.message}")
        object.__setattr__(self, "keywords", tuple(self.keywords))

    def public_dict(self) -> dict[str, Any]:
        """The API shape of the tool (CONTRACT §8)."""
        return {
            "name": self.name,
            "display_name": self.display_name,
            "description": self.description,
            "category": self.category,
            "icon": self.icon,
            "parameters": copy.deepcopy(self.parameters),
            "requires_integration": self.requires_integration,
        }


@dataclass(frozen=True)
class ToolOutcome:
    """The result of one tool call: either `result` (JSON, size-capped) or a safe `error` message."""

    success: bool
    result: Any
    error: str | None
    duration_ms: int
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, for execution logs and events."""
        return {
            "success": self.success,
            "result": self.result,
            "error": self.error,
            "duration_ms": self.duration_ms,
            "truncated": self.truncated,
        }

    def model_content(self) -> str:
        """The text of the tool message sent back to the model."""
        if self.success:
            return _dumps(self.result)
        return _dumps({"error": self.error})


class ToolRegistry:
    """A set of tools by name; `tool_registry` in `integrations.tools` is the populated default."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, Draft202012Validator] = {}

    def register(self, tool: Tool) -> Tool:
        """Add `tool`; a second tool with the same name is refused."""
        if tool.name in self._tools:
            raise ToolRegistrationError(f"A tool named '{tool.name}' is already registered.")
        self._tools[tool.name] = tool
        self._validators[tool.name] = Draft202012Validator(
            tool.parameters, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        return tool

    def get(self, name: str) -> Tool | None:
        """The tool called `name`, or None."""
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def all(self) -> list[Tool]:
        """Every tool, sorted by name."""
        return [self._tools[name] for name in self.names()]

    def names(self) -> list[str]:
        """Every tool name, sorted."""
        return sorted(self._tools)

    def available(self, integration_ids: Iterable[str]) -> list[Tool]:
        """Tools needing no integration plus those whose integration is in `integration_ids`, sorted by name."""
        held = set(integration_ids)
        return [tool for tool in self.all() if tool.requires_integration is None or tool.requires_integration in held]

    def categories(self) -> list[dict[str, str]]:
        """The categories in use as [{id, name}], sorted by id."""
        ids = sorted({tool.category for tool in self._tools.values()})
        return [
            {"id": category, "name": CATEGORY_NAMES.get(category, category.replace("_", " ").title())}
            for category in ids
        ]

    def spec_for_llm(self, names: Iterable[str] | None = None) -> list[ToolSpec]:
        """ToolSpecs for `names` (in order, deduplicated) or for every tool; an unknown name raises ToolNotFound."""
        wanted = self.names() if names is None else list(dict.fromkeys(names))
        specs = []
        for name in wanted:
            tool = self._tools.get(name)
            if tool is None:
                raise ToolNotFound(name)
            # A copy, so that a provider adapter rewriting the schema cannot change the registry.
            specs.append(
                ToolSpec(name=tool.name, description=tool.description, parameters=copy.deepcopy(tool.parameters))
            )
        return specs

    def validate_arguments(self, name: str, arguments: Any) -> None:
        """Raise ToolNotFound or ToolArgumentError (listing every problem with its JSON path) unless `arguments` fit."""
        validator = self._validators.get(name)
        if validator is None:
            raise ToolNotFound(name)
        problems = sorted(validator.iter_errors(arguments), key=lambda error: (error.json_path, error.message))
        if problems:
            raise ToolArgumentError(
                name,
                [
                    {"path": error.json_path, "message": _clip(error.message, _MAX_ERROR_MESSAGE_CHARS)}
                    for error in problems
                ],
            )

    def execute(self, name: str, arguments: Any, context: ToolContext | None = None) -> ToolOutcome:
        """Run one call; raises ToolNotFound or ToolArgumentError, and any failure while running becomes the outcome."""
        tool = self._tools.get(name)
        if tool is None:
            raise ToolNotFound(name)
        self.validate_arguments(name, arguments)
        context = context if context is not None else ToolContext()

        started = time.perf_counter()
        try:
            result = tool.execute(arguments, context)
        except ToolError as exc:
            return ToolOutcome(False, None, exc.message, _elapsed_ms(started))
        except Exception:
            # The exception text may hold secrets or internals, so it goes to the log, never to the model.
            logger.exception("Tool %s raised an unexpected error", name)
            return ToolOutcome(False, None, GENERIC_FAILURE.format(name=name), _elapsed_ms(started))

        try:
            result, truncated = fit_result(result)
        except (TypeError, ValueError, RecursionError):
            logger.exception("Tool %s returned a result that is not JSON-serialisable", name)
            return ToolOutcome(False, None, UNENCODABLE_RESULT.format(name=name), _elapsed_ms(started))
        return ToolOutcome(True, result, None, _elapsed_ms(started), truncated)


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _dumps(value: Any) -> str:
    # allow_nan=False: NaN and Infinity are not JSON and would break strict clients and JSONB columns.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated {len(text) - limit} characters]"


# Successively harsher limits (longest string, most items per list or object). The first rungs keep
# the shape of the result (so a workflow can still read its fields) while shortening long text.
_SHRINK_LADDER = ((16384, 1000), (4096, 200), (1024, 50), (256, 20), (64, 5))
_SHRINK_MAX_DEPTH = 20


def fit_result(result: Any, max_bytes: int = MAX_RESULT_BYTES) -> tuple[Any, bool]:
    """The result as plain JSON values, shrunk with visible markers to at most `max_bytes`; and whether it was."""
    encoded = _dumps(result)
    if _size(encoded) <= max_bytes:
        # Round-tripped so callers always get plain JSON values (lists, str keys), as stored.
        return json.loads(encoded), False

    plain = json.loads(encoded)
    original_size = _size(encoded)
    for string_limit, item_limit in _SHRINK_LADDER:
        shrunk = _shrink(plain, string_limit, item_limit, 0)
        if _size(_dumps(shrunk)) <= max_bytes:
            return shrunk, True

    # Nothing structural fits (for example, thousands of keys): keep a prefix of the JSON text.
    marker = f"… [truncated: result was {original_size} bytes, limit {max_bytes}]"
    cut = max_bytes
    while cut > 0 and _size(_dumps(encoded[:cut] + marker)) > max_bytes:
        cut = cut * 3 // 4
    return encoded[:cut] + marker, True


def _shrink(value: Any, string_limit: int, item_limit: int, depth: int) -> Any:
    if isinstance(value, str):
        return _clip(value, string_limit)
    if isinstance(value, list | dict) and depth >= _SHRINK_MAX_DEPTH:
        return "… [nested too deeply, truncated]"
    if isinstance(value, list):
        kept = [_shrink(item, string_limit, item_limit, depth + 1) for item in value[:item_limit]]
        if len(value) > item_limit:
            kept.append(f"… [{len(value) - item_limit} more items truncated]")
        return kept
    if isinstance(value, dict):
        items = list(value.items())
        kept_dict = {key: _shrink(item, string_limit, item_limit, depth + 1) for key, item in items[:item_limit]}
        if len(items) > item_limit:
            kept_dict["…"] = f"{len(items) - item_limit} more keys truncated"
        return kept_dict
    return value
