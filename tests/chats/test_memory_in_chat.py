"""Memories in chat: given to the model, counted, skipped when archived or off; the `remember` tool stores them."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.services import tokens_issue
from agents.models import Agent
from claraverse.asgi import application
from memories.models import Memory
from memories.selectors import memory_content
from memories.services import PROMPT_HEADER, memory_create
from tests.support.llm_server import Reply, create_model, create_provider

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_async_db_connections")]

MODEL = "test/model:latest"


@pytest.fixture
def chat_model(llm_server):
    return create_model(create_provider(llm_server, "openai", api_key="sk-test-key-abcdefghijklmnop"), MODEL)


async def chat(user, message="Hello", conversation_id="conv_1", **extra) -> list[dict]:
    token = await database_sync_to_async(lambda: tokens_issue(user=user).access_token)()
    communicator = WebsocketCommunicator(application, f"/ws/chat?token={token}")
    connected, _ = await communicator.connect()
    assert connected
    payload = {"conversation_id": conversation_id, "message": message, "model": MODEL, **extra}
    await communicator.send_json_to({"type": "chat", "payload": payload})
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        frames.append(frame)
        if frame["type"] == "error" or frame["payload"].get("done"):
            break
    await communicator.disconnect()
    return frames


def remember(user, content, **fields) -> Memory:
    return memory_create(user=user, content=content, **fields)


def memory_messages(request) -> list[str]:
    return [m["content"] for m in request.body["messages"] if m["role"] == "system" and PROMPT_HEADER in m["content"]]


@database_sync_to_async
def archive(memory: Memory) -> None:
    Memory.objects.filter(pk=memory.pk).update(archived=True)


@database_sync_to_async
def reload(memory: Memory) -> Memory:
    return Memory.objects.get(pk=memory.pk)


async def test_active_memories_reach_the_model_in_order_and_are_counted(llm_server, chat_model, user, other_user):
    create = database_sync_to_async(remember)
    low = await create(user, "Likes green tea", category="preference", importance="low")
    high = await create(user, "The user's name is Ada", category="personal_info", importance="high")
    medium = await create(user, "Works as a\nmarine biologist", importance="medium")
    used_before = await create(user, "Answer in French", category="instruction", importance="medium")
    await database_sync_to_async(Memory.objects.filter(pk=used_before.pk).update)(access_count=5)
    hidden = await create(user, "An archived detail", importance="high")
    await archive(hidden)
    theirs = await create(other_user, "Someone else's secret", importance="high")

    frames = await chat(user, "Who am I?")
    assert frames[-1]["payload"]["done"] is True

    sent = llm_server.chat_requests[0].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user"] and sent[-1]["content"] == "Who am I?"
    assert sent[0]["content"].splitlines() == [
        PROMPT_HEADER,
        "- [personal_info] The user's name is Ada",
        "- [instruction] Answer in French",
        "- [fact] Works as a marine biologist",
        "- [preference] Likes green tea",
    ]
    for memory in (low, high, medium):
        fresh = await reload(memory)
        assert fresh.access_count == 1 and fresh.last_accessed_at is not None
        assert fresh.updated_at == memory.updated_at  # being read is not a change
    assert (await reload(used_before)).access_count == 6
    assert (await reload(hidden)).access_count == 0 and (await reload(theirs)).access_count == 0
    # Memories are given, not stored: the conversation history holds only the turn itself.
    await chat(user, "Again", conversation_id="conv_1")
    second = llm_server.chat_requests[1].body["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert (await reload(high)).access_count == 2


async def test_no_memories_no_system_message(llm_server, chat_model, user):
    await chat(user)
    assert llm_server.chat_requests[0].body["messages"] == [{"role": "user", "content": "Hello"}]


async def test_an_archived_memory_is_not_given(llm_server, chat_model, user):
    memory = await database_sync_to_async(remember)(user, "Secret archived preference")
    await archive(memory)
    await chat(user)
    assert "Secret archived preference" not in str(llm_server.chat_requests[0].body["messages"])
    assert (await reload(memory)).access_count == 0


async def test_memory_disabled_in_preferences(llm_server, chat_model, user):
    memory = await database_sync_to_async(remember)(user, "Prefers short answers", importance="high")
    user.preferences = {"memory_enabled": False}
    await database_sync_to_async(user.save)()
    await chat(user)
    assert llm_server.chat_requests[0].body["messages"] == [{"role": "user", "content": "Hello"}]
    assert (await reload(memory)).access_count == 0


async def test_token_budget_keeps_the_most_important(llm_server, chat_model, user, settings):
    # Room for the header and about 60 more characters: two short lines, not the third.
    settings.MEMORY_TOKEN_BUDGET = (len(PROMPT_HEADER) + 64) // 4
    create = database_sync_to_async(remember)
    long_high = await create(user, "x" * 400, importance="high")
    high = await create(user, "Name is Ada", importance="high")
    low = await create(user, "Likes tea " * 3, importance="low")
    medium = await create(user, "Lives in Lisbon", importance="medium")
    await chat(user)
    [given] = memory_messages(llm_server.chat_requests[0])
    assert len(given) <= settings.MEMORY_TOKEN_BUDGET * 4
    assert "Name is Ada" in given and "Lives in Lisbon" in given
    assert "x" * 400 not in given and "Likes tea" not in given
    assert (await reload(long_high)).access_count == 0 and (await reload(low)).access_count == 0
    assert (await reload(high)).access_count == 1 and (await reload(medium)).access_count == 1


async def test_agent_system_prompt_comes_first(llm_server, chat_model, user):
    await database_sync_to_async(remember)(user, "Likes tea")
    agent = await database_sync_to_async(Agent.objects.create)(
        user=user, name="Helper", model=MODEL, system_prompt="You are terse."
    )
    await chat(user, agent_id=agent.id)
    sent = llm_server.chat_requests[0].body["messages"]
    assert sent[0] == {"role": "system", "content": "You are terse."}
    assert sent[1]["role"] == "system" and "- [fact] Likes tea" in sent[1]["content"]


async def test_the_remember_tool_stores_a_memory_from_a_chat(llm_server, chat_model, user):
    arguments = {"content": "The user is allergic to peanuts", "category": "personal_info", "importance": "high"}
    llm_server.enqueue(Reply(tool_calls=[("remember", arguments)]), Reply(text="Noted."), Reply(text="Careful!"))
    frames = await chat(user, "Remember that I am allergic to peanuts.", tools=["remember"])
    assert [f["type"] for f in frames][:2] == ["tool_call", "tool_result"]
    result = frames[1]["payload"]
    assert result["status"] == "completed"
    memory = await database_sync_to_async(Memory.objects.get)(user=user)
    assert result["result"] == {"id": memory.id, **arguments}
    assert await database_sync_to_async(memory_content)(memory) == "The user is allergic to peanuts"
    assert (memory.category, memory.importance) == ("personal_info", "high")

    await chat(user, "Suggest a snack.", conversation_id="conv_2")
    [given] = memory_messages(llm_server.chat_requests[2])
    assert "- [personal_info] The user is allergic to peanuts" in given
