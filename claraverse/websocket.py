"""The base of every WebSocket consumer (CONTRACT §12).

Frames are `{"type": ..., "payload": {...}}`. The base consumer refuses an unauthenticated
socket (accept, `error` frame `UNAUTHORIZED`, close 4401), a rate-limited one (`RATE_LIMIT`,
close 4429), answers `ping` with `pong`, and turns malformed frames, unknown types and
`ApplicationError`s raised by handlers into `error` frames while keeping the socket open.
Subclasses add frame types in `frame_handlers`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from .channel_layer import group_send_sync
from .errors import DEFAULT_MESSAGES, ApplicationError
from .parsers import strict_json_loads
from .ratelimit import client_ip, websocket_connection_allowed

logger = logging.getLogger("claraverse.websocket")

CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_RATE_LIMITED = 4429


def validated_payload(serializer_class, payload: dict) -> dict:
    """Validate a frame's payload; a failure raises the VALIDATION_ERROR that becomes an `error` frame."""
    from .errors import validation_details

    serializer = serializer_class(data=payload)
    if not serializer.is_valid():
        details = validation_details(serializer.errors)
        field, messages = next(iter(details.items()))
        first = messages[0] if isinstance(messages, list) and messages else messages
        raise ApplicationError("VALIDATION_ERROR", f"{field}: {first}", details=details)
    return serializer.validated_data


def user_group(user_id: str) -> str:
    """The channel-layer group every socket of one user joins."""
    return f"user.{user_id}"


def close_user_sockets(user_id: str) -> None:
    """Close every open socket of a user (deactivation, revocation), in every web process."""
    group_send_sync(user_group(user_id), {"type": "user.revoked"})


def _scope_meta(scope: dict) -> dict[str, str]:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
    client = scope.get("client") or ["unknown", 0]
    return {"REMOTE_ADDR": client[0], "HTTP_X_FORWARDED_FOR": headers.get("x-forwarded-for", "")}


class JsonFrameConsumer(AsyncJsonWebsocketConsumer):
    """Authenticated, rate-limited `{type, payload}` JSON socket; subclasses add frame types."""

    frame_handlers: dict[str, str] = {"ping": "on_ping"}

    user = None

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        # Every streamed chunk is encoded here: orjson takes a fraction of json.dumps's time (bench.chat_ws).
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS).decode()
        except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits (a tool's result): the slow path
            return json.dumps(content)

    async def connect(self):
        await self.accept()
        decision = await sync_to_async(websocket_connection_allowed)(client_ip(_scope_meta(self.scope)))
        if not decision.allowed:
            await self.send_error("RATE_LIMIT", details={"retry_after": decision.retry_after})
            await self.close(code=CLOSE_RATE_LIMITED)
            return
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.send_error("UNAUTHORIZED", "Missing, invalid or expired token.")
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.user = user
        await self.channel_layer.group_add(user_group(user.pk), self.channel_name)
        await self.on_authenticated()

    async def on_authenticated(self) -> None:
        """Hook for subclasses, called once the socket is accepted and authenticated."""

    async def disconnect(self, code):
        if self.user is not None:
            await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if self.user is None:
            return  # refused sockets are closing; ignore anything they still send
        if text_data is None:
            await self.send_error("VALIDATION_ERROR", "Binary frames are not supported; send JSON text.")
            return
        max_bytes = settings.WEBSOCKET_MAX_FRAME_BYTES
        # The limit is in bytes: 4-byte characters make a frame of max_bytes characters 4 times larger.
        if len(text_data) > max_bytes or len(text_data.encode("utf-8", "surrogatepass")) > max_bytes:
            await self.send_error("VALIDATION_ERROR", "Frame too large.", details={"max_bytes": max_bytes})
            return
        try:
            content = strict_json_loads(text_data)
        except ValueError as exc:
            await self.send_error("VALIDATION_ERROR", "Frame is not valid JSON.", details={"frame": [str(exc)[:200]]})
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs):
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_error("VALIDATION_ERROR", 'A frame must be an object with a string "type".')
            return
        payload = content.get("payload", {})
        if not isinstance(payload, dict):
            await self.send_error("VALIDATION_ERROR", '"payload" must be an object.')
            return
        frame_type = content["type"]
        method_name = self.frame_handlers.get(frame_type)
        if method_name is None:
            known = ", ".join(sorted(self.frame_handlers))
            await self.send_error(
                "VALIDATION_ERROR", f"Unknown frame type {frame_type[:64]!r}; expected one of: {known}."
            )
            return
        try:
            await getattr(self, method_name)(payload)
        except ApplicationError as exc:
            await self.send_error(exc.code, exc.message, details=exc.details, **self.error_context(payload))
        except Exception:
            logger.exception("websocket handler %s failed", frame_type)
            await self.send_error("INTERNAL_ERROR", **self.error_context(payload))

    def error_context(self, payload: dict) -> dict:
        """Keys copied from a failing frame's payload into its error frame (e.g. conversation_id)."""
        return {}

    async def on_ping(self, payload: dict) -> None:
        await self.send_frame("pong", {})

    async def send_frame(self, frame_type: str, payload: dict) -> None:
        """Send one `{type, payload}` frame."""
        await self.send_json({"type": frame_type, "payload": payload})

    async def send_error(self, code: str, message: str | None = None, *, details: dict | None = None, **extra) -> None:
        """Send an `error` frame `{error, code, details, ...extra}`."""
        payload = {**extra, "error": message or DEFAULT_MESSAGES.get(code, code), "code": code}
        if details:
            payload["details"] = details
        await self.send_frame("error", payload)

    async def user_revoked(self, event: dict) -> None:
        """Channel-layer message: the user was deactivated; end this socket."""
        await self.send_error("UNAUTHORIZED", "Session revoked.")
        await self.close(code=CLOSE_UNAUTHORIZED)


class UnknownRouteConsumer(AsyncJsonWebsocketConsumer):
    """Any WebSocket path that is not a known route: an `error` frame, then close 4404."""

    async def connect(self):
        await self.accept()
        await self.send_json({"type": "error", "payload": {"error": "Unknown WebSocket route.", "code": "NOT_FOUND"}})
        await self.close(code=CLOSE_NOT_FOUND)
