"""WebSocket routes. Each app adds its consumer here as it gains one; anything else is a 4404."""

from django.urls import re_path

from chats.consumers import ChatConsumer
from executions.consumers import WorkflowConsumer
from integrations.mcp_consumer import MCPConsumer

from .websocket import UnknownRouteConsumer

websocket_urlpatterns = [
    re_path(r"^ws/chat/?$", ChatConsumer.as_asgi()),
    re_path(r"^ws/workflow/?$", WorkflowConsumer.as_asgi()),
    re_path(r"^mcp/connect/?$", MCPConsumer.as_asgi()),
    re_path(r"^.*$", UnknownRouteConsumer.as_asgi()),
]
