"""`/ws/chat` through the real ASGI application against a loopback provider (API.md, CONTRACT §12)."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import override_settings

from accounts.services import tokens_issue
from agents.models import Agent
from chats.models import Chat
from chats.services import conversation_history
from claraverse.asgi import application
from integrations.models import LLMUsage
from tests.factories import UserFactory
from tests.support.llm_server import Reply, create_model, create_provider

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_async_db_connections")]

MODEL = "test/model:latest"


@pytest.fixture
def chat_model(llm_server):
    return create_model(create_provider(llm_server, "openai", api_key="sk-test-key-abcdefghijklmnop"), MODEL)


@pytest.fixture
def token(user):
    return tokens_issue(user=user).access_token


async def open_socket(token: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"/ws/chat?token={token}")
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def frames_until_done(communicator, conversation_id=None, timeout=5.0) -> list[dict]:
    """Every frame up to the final `stream` frame (or an error) of one conversation."""
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        frames.append(frame)
        payload = frame["payload"]
        if conversation_id and payload.get("conversation_id") != conversation_id:
            continue
        if frame["type"] == "error" or (frame["type"] == "stream" and payload.get("done")):
            return frames


def chat(conversation_id="conv_1", message="Hello, how are you?", **extra) -> dict:
    return {
        "type": "chat",
        "payload": {"conversation_id": conversation_id, "message": message, "model": MODEL, **extra},
    }


async def test_chunks_queued_behind_a_busy_socket_are_sent_as_one_frame(llm_server, chat_model, token):
    llm_server.enqueue(Reply(text="".join(f"piece {index}. " for index in range(200)), chunks=200))
    communicator = await open_socket(token)
    await communicator.send_json_to(chat())
    frames = await frames_until_done(communicator)
    chunks = [f["payload"]["content"] for f in frames[:-1]]
    assert "".join(chunks) == "".join(f"piece {index}. " for index in range(200))
    assert all(frame["payload"]["done"] is False for frame in frames[:-1]) and frames[-1]["payload"]["done"]
    assert len(chunks) < 200  # sent back to back by the provider, they queued up and were merged
    await communicator.disconnect()


async def test_streams_chunks_then_a_final_frame_with_usage(llm_server, chat_model, token, user):
    # Chunks 50 ms apart each get their own frame (chunks queued behind a busy socket would be merged).
    reply = Reply(
        text="Hello! I'm fine, thanks.", chunks=3, chunk_interval=0.05, prompt_tokens=150, completion_tokens=200
    )
    llm_server.enqueue(reply)
    communicator = await open_socket(token)
    await communicator.send_json_to(chat())
    frames = await frames_until_done(communicator)
    chunks = [f["payload"] for f in frames[:-1]]
    assert [f["type"] for f in frames] == ["stream"] * 4
    assert all(c["done"] is False and c["conversation_id"] == "conv_1" for c in chunks)
    assert "".join(c["content"] for c in chunks) == "Hello! I'm fine, thanks."
    assert frames[-1]["payload"] == {
        "conversation_id": "conv_1",
        "content": "",
        "done": True,
        "usage": {"prompt_tokens": 150, "completion_tokens": 200},
    }
    history = await database_sync_to_async(conversation_history)(user=user, conversation_id="conv_1")
    assert [(m["role"], m["content"]) for m in history] == [
        ("user", "Hello, how are you?"),
        ("assistant", "Hello! I'm fine, thanks."),
    ]
    sent = llm_server.chat_requests[0]
    assert sent.headers["authorization"] == "Bearer sk-test-key-abcdefghijklmnop"
    assert sent.body["model"] == "provider-model-name" and sent.body["stream"] is True
    usage = await database_sync_to_async(lambda: list(LLMUsage.objects.values("source", "outcome", "model_id")))()
    assert usage == [{"source": "chat", "outcome": "success", "model_id": MODEL}]
    await communicator.disconnect()


async def test_history_is_sent_and_persisted_encrypted(llm_server, chat_model, token):
    llm_server.enqueue(Reply(text="First answer"), Reply(text="Second answer"))
    communicator = await open_socket(token)
    await communicator.send_json_to(chat(message="My favourite colour is teal."))
    await frames_until_done(communicator)
    await communicator.send_json_to(chat(message="What is my favourite colour?"))
    await frames_until_done(communicator)
    second = llm_server.chat_requests[1].body["messages"]
    assert [(m["role"], m["content"]) for m in second] == [
        ("user", "My favourite colour is teal."),
        ("assistant", "First answer"),
        ("user", "What is my favourite colour?"),
    ]

    def stored_columns():
        with connection.cursor() as cursor:
            cursor.execute("SELECT title_encrypted, messages_encrypted, version FROM chats_chat")
            return cursor.fetchall()

    rows = await database_sync_to_async(stored_columns)()
    assert len(rows) == 1 and rows[0][2] == 2
    assert "teal" not in str(rows) and "First answer" not in str(rows)
    await communicator.disconnect()


async def test_stream_false_sends_one_frame(llm_server, chat_model, token):
    llm_server.enqueue(Reply(text="The whole answer.", chunks=4, prompt_tokens=3, completion_tokens=4))
    communicator = await open_socket(token)
    await communicator.send_json_to(chat(stream=False))
    frames = await frames_until_done(communicator)
    assert frames == [
        {
            "type": "stream",
            "payload": {
                "conversation_id": "conv_1",
                "content": "The whole answer.",
                "done": True,
                "usage": {"prompt_tokens": 3, "completion_tokens": 4},
            },
        }
    ]
    await communicator.disconnect()


async def test_tool_call_then_result_then_follow_up(llm_server, chat_model, token, user):
    llm_server.enqueue(
        Reply(tool_calls=[("calculate_math", {"expression": "6*7"})], prompt_tokens=10, completion_tokens=5),
        Reply(text="6 times 7 is 42.", prompt_tokens=20, completion_tokens=6),
    )
    communicator = await open_socket(token)
    await communicator.send_json_to(chat(message="What is 6*7?", tools=["calculate_math"]))
    frames = await frames_until_done(communicator)
    types = [f["type"] for f in frames]
    assert types[:2] == ["tool_call", "tool_result"] and types[-1] == "stream"
    assert frames[0]["payload"] == {
        "conversation_id": "conv_1",
        "tool": "calculate_math",
        "arguments": {"expression": "6*7"},
        "status": "executing",
    }
    assert frames[1]["payload"] == {
        "conversation_id": "conv_1",
        "tool": "calculate_math",
        "result": {"expression": "6*7", "result": 42},
        "status": "completed",
    }
    assert "".join(f["payload"]["content"] for f in frames[2:]) == "6 times 7 is 42."
    assert frames[-1]["payload"]["usage"] == {"prompt_tokens": 30, "completion_tokens": 11}
    first, second = llm_server.chat_requests
    assert [t["function"]["name"] for t in first.body["tools"]] == ["calculate_math"]
    tool_message = second.body["messages"][-1]
    assert tool_message["role"] == "tool" and '"result": 42' in tool_message["content"].replace(":42", ": 42")
    history = await database_sync_to_async(conversation_history)(user=user, conversation_id="conv_1")
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    await communicator.disconnect()


async def test_a_tool_that_was_not_offered_fails_back_to_the_model(llm_server, chat_model, token):
    llm_server.enqueue(Reply(tool_calls=[("get_current_time", {})]), Reply(text="Sorry."))
    communicator = await open_socket(token)
    await communicator.send_json_to(chat(tools=["calculate_math"]))
    frames = await frames_until_done(communicator)
    assert frames[1]["type"] == "tool_result" and frames[1]["payload"]["status"] == "failed"
    await communicator.disconnect()


async def test_stop_ends_the_stream_with_stopped(llm_server, chat_model, token, user):
    llm_server.enqueue(Reply(text="word " * 100, chunks=100, chunk_interval=0.05))
    communicator = await open_socket(token)
    await communicator.send_json_to(chat())
    first = await communicator.receive_json_from(timeout=5)
    assert first["type"] == "stream" and first["payload"]["done"] is False
    await communicator.send_json_to({"type": "stop", "payload": {"conversation_id": "conv_1"}})
    frames = await frames_until_done(communicator)
    final = frames[-1]["payload"]
    assert final["done"] is True and final["stopped"] is True
    streamed = first["payload"]["content"] + "".join(f["payload"]["content"] for f in frames[:-1])
    assert len(streamed) < len("word " * 100)
    history = await database_sync_to_async(conversation_history)(user=user, conversation_id="conv_1")
    assert history[-1]["role"] == "assistant" and history[-1]["stopped"] is True
    await communicator.disconnect()


async def test_stop_without_a_generation_is_an_error(token):
    communicator = await open_socket(token)
    await communicator.send_json_to({"type": "stop", "payload": {"conversation_id": "nothing"}})
    frame = await communicator.receive_json_from(timeout=2)
    assert frame["payload"]["code"] == "NOT_FOUND" and frame["payload"]["conversation_id"] == "nothing"
    await communicator.disconnect()


async def test_unknown_model_is_an_error_frame_and_the_socket_stays_open(llm_server, chat_model, token):
    communicator = await open_socket(token)
    await communicator.send_json_to(chat(model="no/such:model"))
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "error"
    assert frame["payload"]["code"] == "NOT_FOUND" and frame["payload"]["conversation_id"] == "conv_1"
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from(timeout=2))["type"] == "pong"
    await communicator.disconnect()


async def test_disabled_model_is_not_found(llm_server, chat_model, token):
    chat_model.enabled = False
    await database_sync_to_async(chat_model.save)()
    communicator = await open_socket(token)
    await communicator.send_json_to(chat())
    assert (await communicator.receive_json_from(timeout=5))["payload"]["code"] == "NOT_FOUND"
    await communicator.disconnect()


@override_settings(LLM_MAX_ATTEMPTS=2, LLM_RETRY_BACKOFF_SECONDS=0.01)
async def test_provider_down_is_provider_error(llm_server, chat_model, token):
    llm_server.enqueue(Reply(status=500), Reply(status=503))
    communicator = await open_socket(token)
    await communicator.send_json_to(chat())
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "error" and frame["payload"]["code"] == "PROVIDER_ERROR"
    assert "sk-test-key" not in frame["payload"]["error"]
    await communicator.disconnect()


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"conversation_id": "c"}, "message"),
        ({"message": "   "}, "message"),
        ({"message": "hi", "tools": "calculate_math"}, "tools"),
        ({"message": "hi", "temperature": 3}, "temperature"),
        ({"message": "hi", "conversation_id": "bad id with spaces"}, "conversation_id"),
        ({"message": "hi", "stream": "sometimes"}, "stream"),
    ],
)
async def test_bad_payloads(token, payload, field):
    communicator = await open_socket(token)
    await communicator.send_json_to({"type": "chat", "payload": payload})
    frame = await communicator.receive_json_from(timeout=2)
    assert frame["payload"]["code"] == "VALIDATION_ERROR" and field in frame["payload"]["details"]
    await communicator.disconnect()


async def test_unknown_tool_name(llm_server, chat_model, token):
    communicator = await open_socket(token)
    await communicator.send_json_to(chat(tools=["no_such_tool"]))
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["payload"]["code"] == "VALIDATION_ERROR" and frame["payload"]["details"] == {"tools": ["no_such_tool"]}
    await communicator.disconnect()


@override_settings(RATE_LIMIT_AUTHENTICATED=2)
async def test_chat_messages_are_rate_limited(llm_server, chat_model, token):
    communicator = await open_socket(token)
    for index in range(2):
        await communicator.send_json_to(chat(conversation_id=f"c{index}"))
        await frames_until_done(communicator, f"c{index}")
    await communicator.send_json_to(chat(conversation_id="c9"))
    frame = await communicator.receive_json_from(timeout=2)
    assert frame["payload"]["code"] == "RATE_LIMIT" and frame["payload"]["details"]["retry_after"] >= 1
    await communicator.disconnect()


async def test_two_conversations_stream_at_once_on_one_socket(llm_server, chat_model, token):
    llm_server.default_reply = Reply(text="abcdefghij", chunks=10, chunk_interval=0.02)
    communicator = await open_socket(token)
    await communicator.send_json_to(chat(conversation_id="a"))
    await communicator.send_json_to(chat(conversation_id="b"))
    done, order = set(), []
    while done != {"a", "b"}:
        frame = await communicator.receive_json_from(timeout=5)
        order.append(frame["payload"]["conversation_id"])
        if frame["payload"].get("done"):
            done.add(frame["payload"]["conversation_id"])
    first_done = min(order.index("a"), order.index("b"))
    assert "a" in order[first_done:] and "b" in order[first_done:]
    # Interleaved: the second conversation started before the first finished.
    assert order.index("b") < len(order) - 1 - order[::-1].index("a")
    await communicator.disconnect()


async def test_a_second_chat_on_a_generating_conversation_is_a_conflict(llm_server, chat_model, token):
    llm_server.enqueue(Reply(text="slow " * 20, chunks=20, chunk_interval=0.05))
    communicator = await open_socket(token)
    await communicator.send_json_to(chat())
    await communicator.send_json_to(chat())
    codes = []
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        if frame["type"] == "error":
            codes.append(frame["payload"]["code"])
        if frame["payload"].get("done"):
            break
    assert codes == ["CONFLICT"]
    await communicator.disconnect()


async def test_conversations_are_isolated_between_users(llm_server, chat_model, token, user):
    llm_server.default_reply = Reply(text="ok")
    mine = await open_socket(token)
    await mine.send_json_to(chat(conversation_id="shared_id", message="my secret plan"))
    await frames_until_done(mine)
    other = await database_sync_to_async(UserFactory)()
    theirs = await open_socket(await database_sync_to_async(lambda: tokens_issue(user=other).access_token)())
    await theirs.send_json_to(chat(conversation_id="shared_id", message="what did I say?"))
    await frames_until_done(theirs)
    sent = llm_server.chat_requests[-1].body["messages"]
    assert "my secret plan" not in str(sent) and len(sent) == 1
    assert await database_sync_to_async(Chat.objects.filter(chat_id="shared_id").count)() == 2
    await mine.disconnect()
    await theirs.disconnect()


async def test_agent_settings_apply(llm_server, chat_model, token, user):
    agent = await database_sync_to_async(Agent.objects.create)(
        user=user,
        name="Helper",
        model=MODEL,
        system_prompt="You are terse.",
        tools=["get_current_time"],
        temperature=0.2,
    )
    llm_server.enqueue(Reply(text="ok"))
    communicator = await open_socket(token)
    await communicator.send_json_to(
        {"type": "chat", "payload": {"conversation_id": "c", "message": "hi", "agent_id": agent.id}}
    )
    await frames_until_done(communicator)
    body = llm_server.chat_requests[0].body
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}
    assert [t["function"]["name"] for t in body["tools"]] == ["get_current_time"] and body["temperature"] == 0.2
    await communicator.disconnect()


async def test_another_users_agent_is_not_found(llm_server, chat_model, token):
    other = await database_sync_to_async(UserFactory)()
    agent = await database_sync_to_async(Agent.objects.create)(user=other, name="Theirs", model=MODEL)
    communicator = await open_socket(token)
    await communicator.send_json_to({"type": "chat", "payload": {"message": "hi", "agent_id": agent.id}})
    assert (await communicator.receive_json_from(timeout=5))["payload"]["code"] == "NOT_FOUND"
    await communicator.disconnect()


async def test_anthropic_provider_end_to_end(llm_server, token):
    provider = await database_sync_to_async(create_provider)(llm_server, "anthropic", api_key="sk-ant-123456789")
    await database_sync_to_async(create_model)(provider, "claude-test")
    llm_server.enqueue(Reply(tool_calls=[("calculate_math", {"expression": "1+1"})]), Reply(text="Two."))
    communicator = await open_socket(token)
    await communicator.send_json_to(
        {
            "type": "chat",
            "payload": {"conversation_id": "c", "message": "1+1?", "model": "claude-test", "tools": ["calculate_math"]},
        }
    )
    frames = await frames_until_done(communicator)
    assert [f["type"] for f in frames][:2] == ["tool_call", "tool_result"]
    assert frames[1]["payload"]["result"]["result"] == 2
    assert llm_server.chat_requests[0].headers["x-api-key"] == "sk-ant-123456789"
    await communicator.disconnect()


async def test_bad_token_is_refused_with_4401():
    communicator = WebsocketCommunicator(application, "/ws/chat?token=nope")
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=2))["payload"]["code"] == "UNAUTHORIZED"
    assert (await communicator.receive_output(timeout=2)) == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()


async def test_closing_the_socket_stops_the_generation(llm_server, chat_model, token, user):
    llm_server.enqueue(Reply(text="word " * 100, chunks=100, chunk_interval=0.05))
    communicator = await open_socket(token)
    await communicator.send_json_to(chat())
    await communicator.receive_json_from(timeout=5)
    await communicator.disconnect()
    for _ in range(100):
        history = await database_sync_to_async(conversation_history)(user=user, conversation_id="conv_1")
        if history:
            break
        await asyncio.sleep(0.05)
    assert history and history[-1].get("stopped") is True
