"""The background event writer: a running execution's events are stored in batches, in order, and published
after they are committed; the row says `completed` only once every event is stored.

These tests commit for real (`transaction=True`): the writer thread has its own database connection.
"""

import itertools

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import override_settings

from executions.events import EventRecorder, execution_group
from executions.models import ExecutionEvent
from executions.run import execute_execution
from executions.services import execution_create
from tests.executions.helpers import agent_with_workflow, node
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

IN_MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 5000}}}


def chain_agent(user, length):
    nodes = [node("start", "trigger", trigger_type="manual")]
    nodes += [node(f"t{index}", "transform", output="{{ prev }}") for index in range(length)]
    nodes.append(node("out", "output", value="{{ prev }}"))
    ids = [spec["id"] for spec in nodes]
    edges = [{"source": source, "target": target} for source, target in itertools.pairwise(ids)]
    return agent_with_workflow(user, nodes, edges)


def received(channel, count):
    layer = get_channel_layer()
    return [async_to_sync(layer.receive)(channel) for _ in range(count)]


@override_settings(EXECUTION_EVENTS_IN_BACKGROUND=True, CHANNEL_LAYERS=IN_MEMORY_LAYER)
def test_events_are_stored_in_order_and_published_after_flush():
    user = UserFactory()
    execution = execution_create(user=user, agent=chain_agent(user, 1), trigger="api", enqueue=False)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(execution_group(execution.pk), channel)

    recorder = EventRecorder(execution.pk, background=True)
    for index in range(700):  # more than one batch
        recorder.record("node_start", {"node_id": f"n{index}"})
    recorder.flush()

    stored = list(ExecutionEvent.objects.filter(execution=execution).order_by("seq").values_list("seq", "payload"))
    assert [seq for seq, _ in stored] == list(range(1, 701))
    assert stored[0][1] == {"execution_id": execution.pk, "node_id": "n0"}
    # Published after storage, several events of the execution to a message, in order.
    frames = []
    while len(frames) < 700:
        message = received(channel, 1)[0]
        frames += message["events"] if message["type"] == "execution.events" else [message]
    assert [frame["seq"] for frame in frames] == list(range(1, 701))
    assert frames[-1]["frame"] == {"type": "node_start", "payload": {"execution_id": execution.pk, "node_id": "n699"}}


@override_settings(EXECUTION_EVENTS_IN_BACKGROUND=True, CHANNEL_LAYERS=IN_MEMORY_LAYER)
def test_a_completed_execution_has_every_event_stored_with_the_end_last():
    user = UserFactory()
    execution = execution_create(user=user, agent=chain_agent(user, 30), trigger="api", enqueue=False)

    finished = execute_execution(execution_id=execution.pk)

    assert finished.status == "completed"
    types = list(ExecutionEvent.objects.filter(execution=execution).order_by("seq").values_list("type", flat=True))
    assert len(types) == 2 * 32 + 1
    assert types[-1] == "execution_complete"
    assert types.count("node_complete") == 32


@override_settings(EXECUTION_EVENTS_IN_BACKGROUND=True, CHANNEL_LAYERS=IN_MEMORY_LAYER)
def test_a_later_recorder_continues_the_sequence():
    user = UserFactory()
    execution = execution_create(user=user, agent=chain_agent(user, 1), trigger="api", enqueue=False)
    first = EventRecorder(execution.pk, background=True)
    first.record("node_start", {"node_id": "a"})
    first.flush()

    second = EventRecorder(execution.pk)  # e.g. the reaper, after the worker died
    second.record("execution_complete", {"status": "failed"})

    assert list(ExecutionEvent.objects.filter(execution=execution).order_by("seq").values_list("seq", "type")) == [
        (1, "node_start"),
        (2, "execution_complete"),
    ]


@override_settings(EXECUTION_EVENTS_IN_BACKGROUND=False)
def test_without_background_mode_each_event_is_stored_at_once():
    user = UserFactory()
    execution = execution_create(user=user, agent=chain_agent(user, 1), trigger="api", enqueue=False)
    recorder = EventRecorder(execution.pk, background=True)  # the setting wins
    recorder.record("node_start", {"node_id": "a"})
    assert ExecutionEvent.objects.filter(execution=execution).count() == 1


@override_settings(EXECUTION_EVENTS_IN_BACKGROUND=True, CHANNEL_LAYERS=IN_MEMORY_LAYER)
def test_a_row_that_cannot_be_stored_costs_only_itself():
    user = UserFactory()
    kept = execution_create(user=user, agent=chain_agent(user, 1), trigger="api", enqueue=False)
    doomed = execution_create(user=user, agent=chain_agent(user, 1), trigger="api", enqueue=False)
    first, second = EventRecorder(kept.pk, background=True), EventRecorder(doomed.pk, background=True)
    first.record("node_start", {"node_id": "a"})
    second.record("node_start", {"node_id": "a"})
    second.record("node_start", {"node_id": "a"})
    second.seq = 1  # a duplicate (execution, seq): the unique constraint refuses it
    second.record("node_start", {"node_id": "duplicate"})
    first.record("node_start", {"node_id": "b"})
    first.flush()

    assert list(ExecutionEvent.objects.filter(execution=kept).order_by("seq").values_list("seq", flat=True)) == [1, 2]
    assert list(ExecutionEvent.objects.filter(execution=doomed).order_by("seq").values_list("seq", flat=True)) == [1, 2]
