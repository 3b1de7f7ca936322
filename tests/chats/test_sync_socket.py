"""Synced chats and /ws/chat history are one store: a synced chat continues over the socket, and back."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.services import tokens_issue
from claraverse.asgi import application
from tests.conftest import client_for
from tests.support.llm_server import Reply, create_model, create_provider

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_async_db_connections")]

MODEL = "test/model:latest"
SYNCED = [
    {"role": "user", "content": "My cat is called Pixel.", "created_at": "2024-01-15T10:30:00Z"},
    {"role": "assistant", "content": "Pixel is a lovely name."},
    {"role": "note", "content": "a client-side annotation the model never sees"},
]


@pytest.fixture
def chat_model(llm_server):
    return create_model(create_provider(llm_server, "openai", api_key="sk-test-key-abcdefghijklmnop"), MODEL)


async def chat_over_socket(user, conversation_id: str, message: str) -> list[dict]:
    token = await database_sync_to_async(lambda: tokens_issue(user=user).access_token)()
    communicator = WebsocketCommunicator(application, f"/ws/chat?token={token}")
    connected, _ = await communicator.connect()
    assert connected
    payload = {"conversation_id": conversation_id, "message": message, "model": MODEL}
    await communicator.send_json_to({"type": "chat", "payload": payload})
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        frames.append(frame)
        if frame["type"] == "error" or frame["payload"].get("done"):
            break
    await communicator.disconnect()
    return frames


async def test_a_synced_chat_continues_over_the_socket(llm_server, chat_model, user):
    client = await database_sync_to_async(client_for)(user)
    synced = await database_sync_to_async(client.post)(
        "/api/chats/sync", {"chats": [{"id": "chat_local_123", "title": "Cats", "messages": SYNCED}]}, format="json"
    )
    assert synced.json()["results"][0]["status"] == "synced"
    llm_server.enqueue(Reply(text="Your cat is called Pixel."))

    frames = await chat_over_socket(user, "chat_local_123", "What is my cat called?")
    assert frames[-1]["type"] == "stream" and frames[-1]["payload"]["done"] is True

    sent = llm_server.chat_requests[0].body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "My cat is called Pixel."),
        ("assistant", "Pixel is a lovely name."),
        ("user", "What is my cat called?"),
    ]
    # The socket's answer is in the synced chat, one version later, with its title kept.
    chat = (await database_sync_to_async(client.get)("/api/chats/chat_local_123")).json()
    assert chat["version"] == 2 and chat["title"] == "Cats" and chat["model"] == MODEL
    assert [m["content"] for m in chat["messages"]] == [
        *(m["content"] for m in SYNCED),
        "What is my cat called?",
        "Your cat is called Pixel.",
    ]
    # A device still holding version 1 is now stale.
    stale = await database_sync_to_async(client.post)(
        "/api/chats", {"id": "chat_local_123", "messages": SYNCED, "version": 1}, format="json"
    )
    assert stale.status_code == 409 and stale.json()["details"] == {"current_version": 2}


async def test_another_users_synced_chat_is_not_continued(llm_server, chat_model, user, other_user):
    client = await database_sync_to_async(client_for)(user)
    await database_sync_to_async(client.post)("/api/chats", {"id": "shared", "messages": SYNCED}, format="json")
    llm_server.enqueue(Reply(text="I don't know."))
    await chat_over_socket(other_user, "shared", "What is my cat called?")
    sent = llm_server.chat_requests[0].body["messages"]
    assert sent == [{"role": "user", "content": "What is my cat called?"}]
    mine = (await database_sync_to_async(client.get)("/api/chats/shared")).json()
    assert mine["version"] == 1 and len(mine["messages"]) == len(SYNCED)
