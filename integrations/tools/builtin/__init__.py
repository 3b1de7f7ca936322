"""The tools that ship with ClaraVerse; `register_builtin_tools` adds them to a registry."""

from integrations.tools.builtin.calculator import CALCULATE_MATH
from integrations.tools.builtin.clock import GET_CURRENT_TIME
from integrations.tools.registry import Tool, ToolRegistry

BUILTIN_TOOLS: tuple[Tool, ...] = (CALCULATE_MATH, GET_CURRENT_TIME)


def register_builtin_tools(registry: ToolRegistry) -> None:
    """Register every built-in tool on `registry`."""
    for tool in BUILTIN_TOOLS:
        registry.register(tool)
