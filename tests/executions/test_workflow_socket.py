"""`/ws/workflow`: execute, events per node, skipped branches, subscribe replays, cancel (CONTRACT §12)."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.services import tokens_issue
from claraverse.asgi import application
from executions.models import Execution
from tests.executions.helpers import BRANCHING_EDGES, BRANCHING_NODES, agent_with_workflow, edge, node
from tests.factories import UserFactory
from tests.support.llm_server import Reply, create_model, create_provider

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_async_db_connections")]


@pytest.fixture
def token(user):
    return tokens_issue(user=user).access_token


@pytest.fixture
def llm_model(llm_server):
    return create_model(create_provider(llm_server, "openai"), "test/model:latest")


async def open_socket(token):
    communicator = WebsocketCommunicator(application, f"/ws/workflow?token={token}")
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def frames_until_complete(communicator, timeout=10.0):
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        frames.append(frame)
        if frame["type"] in {"execution_complete", "error"}:
            return frames


async def test_branching_workflow_over_the_socket(llm_server, llm_model, user, token):
    agent = await database_sync_to_async(agent_with_workflow)(user, BRANCHING_NODES, BRANCHING_EDGES)
    llm_server.enqueue(Reply(text="Great score!"))
    communicator = await open_socket(token)
    await communicator.send_json_to({"type": "execute", "payload": {"agent_id": agent.id, "input": {"score": 80}}})
    frames = await frames_until_complete(communicator)

    start = frames[0]
    assert start["type"] == "execution_start" and start["payload"]["agent_id"] == agent.id
    execution_id = start["payload"]["execution_id"]
    assert all(f["payload"]["execution_id"] == execution_id for f in frames)
    node_frames = [(f["type"], f["payload"]["node_id"]) for f in frames if f["type"].startswith("node_")]
    started = [node_id for kind, node_id in node_frames if kind == "node_start"]
    assert started == ["start", "check", "think", "done"]  # the untaken branch never starts
    completes = {f["payload"]["node_id"]: f["payload"] for f in frames if f["type"] == "node_complete"}
    assert completes["shrug"]["status"] == "skipped"
    assert {completes[n]["status"] for n in ["start", "check", "think", "done"]} == {"completed"}
    assert completes["check"]["output"] == {"result": True}
    assert completes["think"]["output"]["text"] == "Great score!"
    final = frames[-1]["payload"]
    assert final["status"] == "completed" and final["output"] == {"message": "Great score!"}
    assert final["duration_ms"] >= 0
    # The prompt was rendered from the input.
    assert llm_server.chat_requests[0].body["messages"][-1]["content"] == "Praise a score of 80"

    execution = await database_sync_to_async(Execution.objects.get)(pk=execution_id)
    assert execution.status == "completed" and execution.trigger == "websocket"
    stored = {r["node_id"]: r["status"] for r in execution.node_results}
    assert stored == {
        "start": "completed",
        "check": "completed",
        "think": "completed",
        "shrug": "skipped",
        "done": "completed",
    }

    # A second socket replays the whole run.
    second = await open_socket(token)
    await second.send_json_to({"type": "subscribe", "payload": {"execution_id": execution_id}})
    replay = await frames_until_complete(second)
    assert [(f["type"], f["payload"].get("node_id")) for f in replay] == [
        (f["type"], f["payload"].get("node_id")) for f in frames[1:]
    ]
    await communicator.disconnect()
    await second.disconnect()


async def test_false_branch_runs_the_transform(user, token):
    agent = await database_sync_to_async(agent_with_workflow)(user, BRANCHING_NODES, BRANCHING_EDGES)
    communicator = await open_socket(token)
    await communicator.send_json_to({"type": "execute", "payload": {"agent_id": agent.id, "input": {"score": 10}}})
    frames = await frames_until_complete(communicator)
    completes = {f["payload"]["node_id"]: f["payload"]["status"] for f in frames if f["type"] == "node_complete"}
    assert completes["think"] == "skipped" and completes["shrug"] == "completed"
    assert frames[-1]["payload"]["output"] == {"message": "Try again (10)"}
    await communicator.disconnect()


async def test_a_failing_node_sends_node_error(user, token):
    nodes = [
        node("start", "trigger", trigger_type="manual"),
        node("boom", "tool", tool="calculate_math", arguments={"expression": "1/0"}),
    ]
    agent = await database_sync_to_async(agent_with_workflow)(user, nodes, [edge("start", "boom")])
    communicator = await open_socket(token)
    await communicator.send_json_to({"type": "execute", "payload": {"agent_id": agent.id}})
    frames = await frames_until_complete(communicator)
    errors = [f["payload"] for f in frames if f["type"] == "node_error"]
    assert len(errors) == 1 and errors[0]["node_id"] == "boom" and "zero" in errors[0]["error"].lower()
    assert frames[-1]["payload"]["status"] == "failed"
    await communicator.disconnect()


async def test_execute_validation_and_ownership(user, token):
    other = await database_sync_to_async(UserFactory)()
    theirs = await database_sync_to_async(agent_with_workflow)(other, [node("s", "trigger", trigger_type="manual")], [])
    communicator = await open_socket(token)
    await communicator.send_json_to({"type": "execute", "payload": {"agent_id": theirs.id}})
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["payload"]["code"] == "NOT_FOUND" and frame["payload"]["agent_id"] == theirs.id
    await communicator.send_json_to({"type": "execute", "payload": {}})
    assert (await communicator.receive_json_from(timeout=5))["payload"]["code"] == "VALIDATION_ERROR"
    own = await database_sync_to_async(agent_with_workflow)(user, [node("s", "trigger", trigger_type="manual")], [])
    await communicator.send_json_to({"type": "execute", "payload": {"agent_id": own.id, "input": [1, 2]}})
    assert (await communicator.receive_json_from(timeout=5))["payload"]["code"] == "VALIDATION_ERROR"
    # Another user's execution can neither be followed nor cancelled.
    execution = await database_sync_to_async(Execution.objects.create)(user=other, agent_id=theirs.id, trigger="api")
    for frame_type in ("subscribe", "cancel"):
        await communicator.send_json_to({"type": frame_type, "payload": {"execution_id": execution.id}})
        assert (await communicator.receive_json_from(timeout=5))["payload"]["code"] == "NOT_FOUND"
    await communicator.disconnect()


async def test_cancel_over_the_socket(user, token):
    agent = await database_sync_to_async(agent_with_workflow)(user, [node("s", "trigger", trigger_type="manual")], [])
    execution = await database_sync_to_async(Execution.objects.create)(
        user=user, agent_id=agent.id, trigger="api", workflow_version=1
    )
    communicator = await open_socket(token)
    await communicator.send_json_to({"type": "cancel", "payload": {"execution_id": execution.id}})
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "execution_complete" and frame["payload"]["status"] == "cancelled"
    await communicator.send_json_to({"type": "cancel", "payload": {"execution_id": execution.id}})
    assert (await communicator.receive_json_from(timeout=5))["payload"]["code"] == "CONFLICT"
    await communicator.disconnect()
