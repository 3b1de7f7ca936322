"""A hostile WebSocket client: sends anything, then checks that the socket still answers."""

from __future__ import annotations

import itertools
from typing import Any

from channels.testing import WebsocketCommunicator

from claraverse.asgi import application
from claraverse.parsers import strict_json_loads

# Every code an `error` frame may carry (CONTRACT §1).
CONTRACT_CODES = {
    "VALIDATION_ERROR",
    "UNAUTHORIZED",
    "FORBIDDEN",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "CONFLICT",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
    "RATE_LIMIT",
    "QUOTA_EXCEEDED",
    "INTERNAL_ERROR",
    "PROVIDER_ERROR",
    "SERVICE_UNAVAILABLE",
}

# Wrong values for a field by the JSON type it expects. (NUL and lone surrogates never reach a field:
# the frame itself is refused, see the junk frames.)
NOT_A_STRING = [0, 123, -1, 1.5, 10**400, True, False, None, {}, {"a": "b"}, [], ["x"]]
BAD_STRINGS = ["", "x" * 100_000]
NOT_AN_OBJECT = [[], [1, 2], "x", "", 0, 1.5, 10**400, True, False, None]
NOT_A_LIST = ["search_web", 0, 1.5, True, None, {}, {"0": "search_web"}]
BAD_LISTS = [[1], [None], [[]], [{}], [True], [""], ["x" * 1000], ["calculate_math"] * 65]
NOT_A_NUMBER = ["1", "0.5", "NaN", "", True, False, None, [], [1], {}, {"value": 1}]
BAD_NUMBERS = [10**400, -(10**400), 1e308, -1e308, -0.001, 2.001]
NOT_A_BOOLEAN = ["true", "false", "yes", "", 0, 1, 1.5, None, [], {}, [True]]


def deep_object(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


class HostileSocket:
    """A connected communicator whose every answer is checked as daphne would send it."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.communicator = communicator
        self._alive_ids = itertools.count()

    async def receive(self, timeout: float = 5) -> Any:
        """The next frame; fails on a close (e.g. 1011 after a crash) or a frame a client could not read."""
        message = await self.communicator.receive_output(timeout)
        assert message["type"] == "websocket.send", f"the socket ended: {message}"
        text = message.get("text")
        assert text is not None, f"binary frame from the server: {message}"
        text.encode("utf-8")  # daphne encodes every text frame; a lone surrogate would fail the socket there
        assert "Traceback" not in text and 'File "' not in text, text[:500]
        return strict_json_loads(text)  # what a strict client parses: no NaN, no duplicate keys

    async def send(self, frame: Any = None, *, text: str | None = None, binary: bytes | None = None) -> None:
        # Straight to the application: `send_to` refuses an empty text frame, which a client can send.
        if binary is not None:
            await self.communicator.send_input({"type": "websocket.receive", "bytes": binary})
        elif text is not None:
            await self.communicator.send_input({"type": "websocket.receive", "text": text})
        else:
            await self.communicator.send_json_to(frame)

    async def disconnect(self) -> None:
        await self.communicator.disconnect()


class FrameSocket(HostileSocket):
    """`/ws/chat` and `/ws/workflow`: `{type, payload}` frames, `ping` answered with `pong`."""

    async def answers(self, frame: Any = None, **raw) -> list[dict]:
        """Send one frame, then a ping; every frame that came before the pong."""
        await self.send(frame, **raw)
        await self.send({"type": "ping", "payload": {}})
        frames = []
        while (frame := await self.receive()) != {"type": "pong", "payload": {}}:
            frames.append(frame)
        return frames

    async def assert_alive(self) -> None:
        await self.send({"type": "ping", "payload": {}})
        assert await self.receive() == {"type": "pong", "payload": {}}

    async def error_for(self, frame: Any = None, **raw) -> dict:
        """The payload of the one `error` frame a bad frame gets; the socket still answers a ping after it."""
        frames = await self.answers(frame, **raw)
        assert len(frames) == 1 and frames[0]["type"] == "error", (repr(frame or raw)[:300], frames)
        payload = frames[0]["payload"]
        assert payload["code"] in CONTRACT_CODES and isinstance(payload["error"], str) and payload["error"], payload
        return payload


class RpcSocket(HostileSocket):
    """`/mcp/connect`: JSON-RPC 2.0; a `ping` request proves the socket still answers."""

    async def answers(self, frame: Any = None, **raw) -> list[Any]:
        """Send one message, then a ping request; every message that came before the ping's answer."""
        await self.send(frame, **raw)
        alive = f"alive-{next(self._alive_ids)}"
        await self.send({"jsonrpc": "2.0", "id": alive, "method": "ping"})
        replies = []
        while (reply := await self.receive()) != {"jsonrpc": "2.0", "id": alive, "result": {}}:
            replies.append(reply)
        return replies

    async def assert_alive(self) -> None:
        assert await self.answers(text='{"jsonrpc": "2.0", "method": "notifications/initialized"}') == []

    async def error_for(self, frame: Any = None, **raw) -> dict:
        """The one JSON-RPC error response a bad message gets."""
        replies = await self.answers(frame, **raw)
        assert len(replies) == 1 and "error" in replies[0], (repr(frame or raw)[:300], replies)
        reply = replies[0]
        assert reply["jsonrpc"] == "2.0" and set(reply) == {"jsonrpc", "id", "error"}, reply
        assert isinstance(reply["error"]["code"], int) and reply["error"]["message"], reply
        return reply


async def connect(route: str, token: str, socket_class=FrameSocket, **kwargs) -> Any:
    communicator = WebsocketCommunicator(application, f"{route}?token={token}", **kwargs)
    connected, _ = await communicator.connect()
    assert connected
    return socket_class(communicator)
