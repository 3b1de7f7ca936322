"""The tools that ship with ClaraVerse; `register_builtin_tools` adds them to a registry."""

from integrations.tools.builtin.calculator import CALCULATE_MATH
from integrations.tools.builtin.clock import GET_CURRENT_TIME
from integrations.tools.builtin.documents import READ_DOCUMENT
from integrations.tools.builtin.http_request import HTTP_REQUEST
from integrations.tools.builtin.mail import SEND_EMAIL
from integrations.tools.builtin.messaging import SEND_DISCORD, SEND_SLACK, SEND_WEBHOOK
from integrations.tools.builtin.remember import REMEMBER
from integrations.tools.builtin.scrape import SCRAPE_WEB
from integrations.tools.builtin.search import SEARCH_WEB
from integrations.tools.registry import Tool, ToolRegistry

BUILTIN_TOOLS: tuple[Tool, ...] = (
    CALCULATE_MATH,
    GET_CURRENT_TIME,
    HTTP_REQUEST,
    READ_DOCUMENT,
    REMEMBER,
    SCRAPE_WEB,
    SEARCH_WEB,
    SEND_DISCORD,
    SEND_EMAIL,
    SEND_SLACK,
    SEND_WEBHOOK,
)


def register_builtin_tools(registry: ToolRegistry) -> None:
    """Register every built-in tool on `registry`."""
    for tool in BUILTIN_TOOLS:
        registry.register(tool)
