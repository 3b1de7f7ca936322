"""The WebSocket base consumer through the real ASGI stack (CONTRACT §12)."""

import json

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from django.urls import path

from accounts.authentication import QueryStringTokenAuthMiddleware
from accounts.services import tokens_issue, user_deactivate
from claraverse.asgi import application
from claraverse.websocket import JsonFrameConsumer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_async_db_connections")]

frame_app = QueryStringTokenAuthMiddleware(URLRouter([path("ws/base", JsonFrameConsumer.as_asgi())]))


async def connect(token: str | None, app=frame_app, route="/ws/base", client=("127.0.0.1", 50000)):
    query = f"?token={token}" if token is not None else ""
    communicator = WebsocketCommunicator(app, f"{route}{query}")
    communicator.scope["client"] = client
    connected, _ = await communicator.connect()
    assert connected
    return communicator


@pytest.fixture
def access_token(user):
    return tokens_issue(user=user).access_token


async def expect_error(communicator, code: str) -> dict:
    frame = await communicator.receive_json_from(timeout=2)
    assert frame["type"] == "error" and frame["payload"]["code"] == code, frame
    assert frame["payload"]["error"]
    return frame["payload"]


async def expect_closed(communicator, close_code: int):
    message = await communicator.receive_output(timeout=2)
    assert message == {"type": "websocket.close", "code": close_code}
    await communicator.disconnect()  # stops the application task (and its channel-layer reader)


@pytest.mark.parametrize("token", [None, "", "garbage", "a.b.c"])
async def test_refuses_missing_or_bad_token_with_4401(token):
    communicator = await connect(token)
    await expect_error(communicator, "UNAUTHORIZED")
    await expect_closed(communicator, 4401)


async def test_refuses_refresh_token_and_expired_token(user):
    from datetime import timedelta

    from rest_framework_simplejwt.tokens import AccessToken

    refresh = (await database_sync_to_async(tokens_issue)(user=user)).refresh_token
    communicator = await connect(refresh)
    await expect_error(communicator, "UNAUTHORIZED")
    await expect_closed(communicator, 4401)

    expired = AccessToken.for_user(user)
    expired.set_exp(lifetime=-timedelta(seconds=1))
    communicator = await connect(str(expired))
    await expect_error(communicator, "UNAUTHORIZED")
    await expect_closed(communicator, 4401)


async def test_ping_pong(access_token):
    communicator = await connect(access_token)
    await communicator.send_json_to({"type": "ping", "payload": {}})
    assert await communicator.receive_json_from(timeout=2) == {"type": "pong", "payload": {}}
    await communicator.send_json_to({"type": "ping"})  # payload is optional
    assert (await communicator.receive_json_from(timeout=2))["type"] == "pong"
    await communicator.disconnect()


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2, 3]",
        '"just a string"',
        '{"payload": {}}',
        '{"type": 42, "payload": {}}',
        '{"type": "ping", "payload": "not an object"}',
        '{"type": "no_such_type", "payload": {}}',
        "[" * 50_000 + "]" * 50_000,
    ],
)
async def test_bad_frames_get_validation_errors_and_the_socket_stays_open(access_token, raw):
    communicator = await connect(access_token)
    await communicator.send_to(text_data=raw)
    await expect_error(communicator, "VALIDATION_ERROR")
    await communicator.send_json_to({"type": "ping", "payload": {}})
    assert (await communicator.receive_json_from(timeout=2))["type"] == "pong"
    await communicator.disconnect()


async def test_binary_and_oversized_frames(access_token):
    communicator = await connect(access_token)
    await communicator.send_to(bytes_data=b"\x00\x01")
    await expect_error(communicator, "VALIDATION_ERROR")
    with override_settings(WEBSOCKET_MAX_FRAME_BYTES=1024):
        await communicator.send_to(text_data=json.dumps({"type": "ping", "payload": {"x": "y" * 2000}}))
        payload = await expect_error(communicator, "VALIDATION_ERROR")
    assert payload["details"] == {"max_bytes": 1024}
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from(timeout=2))["type"] == "pong"
    await communicator.disconnect()


@override_settings(RATE_LIMIT_WEBSOCKET=2)
async def test_connection_attempts_are_rate_limited_per_ip(access_token):
    for _ in range(2):
        communicator = await connect(access_token)
        await communicator.disconnect()
    communicator = await connect(access_token)
    payload = await expect_error(communicator, "RATE_LIMIT")
    assert payload["details"]["retry_after"] >= 1
    await expect_closed(communicator, 4429)
    # Another address is counted apart.
    other = await connect(access_token, client=("10.9.8.7", 40000))
    await other.send_json_to({"type": "ping"})
    assert (await other.receive_json_from(timeout=2))["type"] == "pong"
    await other.disconnect()


async def test_deactivating_a_user_closes_their_sockets(user, access_token):
    communicator = await connect(access_token)
    await database_sync_to_async(user_deactivate)(user=user)
    await expect_error(communicator, "UNAUTHORIZED")
    await expect_closed(communicator, 4401)


async def test_unknown_route_on_the_real_application(access_token):
    communicator = await connect(access_token, app=application, route="/ws/nowhere")
    await expect_error(communicator, "NOT_FOUND")
    await expect_closed(communicator, 4404)
