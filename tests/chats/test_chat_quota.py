"""messages_per_day applies to chat: an `error` frame QUOTA_EXCEEDED, and the socket stays open."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.quotas import overrides_set
from accounts.services import tokens_issue
from claraverse.asgi import application
from tests.support.llm_server import Reply, create_model, create_provider

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_async_db_connections")]


async def test_message_quota(llm_server, user):
    await database_sync_to_async(lambda: create_model(create_provider(llm_server, "openai"), "q/model"))()
    await database_sync_to_async(overrides_set)(user=user, values={"messages_per_day": 1})
    llm_server.default_reply = Reply(text="ok")
    token = await database_sync_to_async(lambda: tokens_issue(user=user).access_token)()
    communicator = WebsocketCommunicator(application, f"/ws/chat?token={token}")
    assert (await communicator.connect())[0]
    chat = {"type": "chat", "payload": {"conversation_id": "c", "message": "hi", "model": "q/model"}}
    await communicator.send_json_to(chat)
    while not (frame := await communicator.receive_json_from(timeout=5))["payload"].get("done"):
        pass
    await communicator.send_json_to(chat)
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "error" and frame["payload"]["code"] == "QUOTA_EXCEEDED"
    assert frame["payload"]["details"]["limit"] == 1 and frame["payload"]["conversation_id"] == "c"
    assert len(llm_server.chat_requests) == 1
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from(timeout=2))["type"] == "pong"
    await communicator.disconnect()
