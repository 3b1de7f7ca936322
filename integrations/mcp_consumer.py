"""`/mcp/connect`: the MCP server of one user over a WebSocket (CONTRACT §12); the protocol is in `mcp.py`.

Connect-time rules are the base consumer's: the rate limit (close 4429) and the `?token=` check
(close 4401), and a revoked user's socket is closed with 4401. Unlike the `{type, payload}`
sockets, a refused MCP socket is sent no frame before the close: there is no JSON-RPC request to
answer yet, and an `error` frame (or an error response with a null id) is not an MCP message that
a client would understand. The close code and its reason (`UNAUTHORIZED`, `RATE_LIMIT retry_after=N`)
say why.
"""

from __future__ import annotations

import json

from django.conf import settings

from claraverse.websocket import JsonFrameConsumer

from .mcp import SUBPROTOCOL, MCPSession

# RFC 6455 allows 123 bytes of close reason.
_MAX_CLOSE_REASON_BYTES = 123


class MCPConsumer(JsonFrameConsumer):
    """JSON-RPC 2.0 / MCP socket; frames go to an `MCPSession`, none of the base `{type, payload}` handling."""

    session: MCPSession | None = None
    _close_reason: str | None = None

    @classmethod
    async def encode_json(cls, content) -> str:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":"))

    async def accept(self, subprotocol=None, headers=None):
        # The MCP SDK's WebSocket client asks for the "mcp" subprotocol; agree when offered.
        if subprotocol is None and SUBPROTOCOL in self.scope.get("subprotocols", []):
            subprotocol = SUBPROTOCOL
        await super().accept(subprotocol, headers)

    async def on_authenticated(self) -> None:
        self.session = MCPSession(
            user=self.user, send=self.send_json, max_frame_bytes=settings.WEBSOCKET_MAX_FRAME_BYTES
        )
        self.session.start_watch()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if self.session is None:
            return  # refused sockets are closing; ignore anything they still send
        await self.session.receive_frame(text_data, bytes_data)

    async def receive_json(self, content, **kwargs):
        if self.session is not None:
            await self.session.receive(content)

    async def disconnect(self, code):
        if self.session is not None:
            await self.session.close()
        await super().disconnect(code)

    async def send_error(self, code: str, message: str | None = None, *, details: dict | None = None, **extra) -> None:
        """Refusals and revocation send no frame here; the code becomes the close reason instead."""
        reason = code
        if details and "retry_after" in details:
            reason += f" retry_after={details['retry_after']}"
        self._close_reason = reason

    async def close(self, code=None, reason=None):
        reason = reason or self._close_reason
        if reason:
            reason = reason.encode()[:_MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
        await super().close(code=code, reason=reason)

    async def user_revoked(self, event: dict) -> None:
        """Channel-layer message: the user was deactivated; stop their calls and end this socket."""
        if self.session is not None:
            await self.session.close()
        await super().user_revoked(event)
