"""Tools the model and workflows can call; `tool_registry` is the default registry, built-ins included."""

from integrations.tools.builtin import register_builtin_tools
from integrations.tools.registry import (
    MAX_RESULT_BYTES,
    Tool,
    ToolArgumentError,
    ToolContext,
    ToolError,
    ToolExecutionError,
    ToolNotFound,
    ToolOutcome,
    ToolRegistrationError,
    ToolRegistry,
)

tool_registry = ToolRegistry()
register_builtin_tools(tool_registry)

__all__ = [
    "MAX_RESULT_BYTES",
    "Tool",
    "ToolArgumentError",
    "ToolContext",
    "ToolError",
    "ToolExecutionError",
    "ToolNotFound",
    "ToolOutcome",
    "ToolRegistrationError",
    "ToolRegistry",
    "tool_registry",
]
