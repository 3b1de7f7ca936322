"""`/ws/workflow`: execute an agent, subscribe to any execution's events, cancel (CONTRACT §12)."""

from __future__ import annotations

from channels.db import database_sync_to_async
from rest_framework import serializers

from claraverse.serializers import JsonObjectField, StrictCharField
from claraverse.websocket import JsonFrameConsumer, validated_payload

from . import selectors, services
from .events import execution_group
from .models import ExecutionTrigger


class ExecuteFrameSerializer(serializers.Serializer):
    agent_id = StrictCharField(max_length=64)
    input = JsonObjectField(required=False, default=dict, max_bytes=services.MAX_INPUT_BYTES)


class ExecutionFrameSerializer(serializers.Serializer):
    execution_id = StrictCharField(max_length=64)


class WorkflowConsumer(JsonFrameConsumer):
    """Streams execution events; every event carries its sequence number, so replays never repeat."""

    frame_handlers = {
        **JsonFrameConsumer.frame_handlers,
        "execute": "on_execute",
        "subscribe": "on_subscribe",
        "cancel": "on_cancel",
    }

    async def on_authenticated(self) -> None:
        # execution id -> last event sequence number sent on this socket
        self.sent_seq: dict[str, int] = {}

    async def disconnect(self, code):
        for execution_id in getattr(self, "sent_seq", {}):
            await self.channel_layer.group_discard(execution_group(execution_id), self.channel_name)
        await super().disconnect(code)

    def error_context(self, payload: dict) -> dict:
        return {key: payload[key] for key in ("execution_id", "agent_id") if isinstance(payload.get(key), str)}

    async def _follow(self, execution_id: str) -> None:
        if execution_id not in self.sent_seq:
            self.sent_seq[execution_id] = 0
            await self.channel_layer.group_add(execution_group(execution_id), self.channel_name)

    async def on_execute(self, payload: dict) -> None:
        data = validated_payload(ExecuteFrameSerializer, payload)
        execution = await database_sync_to_async(self._create_execution)(data)
        # Join the group before the run is enqueued, so that no event can be missed.
        await self._follow(execution.id)
        await self.send_frame("execution_start", {"execution_id": execution.id, "agent_id": execution.agent_id})
        await database_sync_to_async(services.execution_enqueue_now)(execution_id=execution.id)

    def _create_execution(self, data: dict):
        from agents.selectors import agent_get

        agent = agent_get(user=self.user, agent_id=data["agent_id"])
        return services.execution_create(
            user=self.user, agent=agent, trigger=ExecutionTrigger.WEBSOCKET, input=data["input"], enqueue=False
        )

    async def on_subscribe(self, payload: dict) -> None:
        execution_id = validated_payload(ExecutionFrameSerializer, payload)["execution_id"]
        await database_sync_to_async(selectors.execution_get)(user=self.user, execution_id=execution_id)
        await self._follow(execution_id)
        events = await database_sync_to_async(selectors.execution_events)(
            execution_id=execution_id, after_seq=self.sent_seq[execution_id]
        )
        for event in events:
            await self._send_event(execution_id, event.seq, event.type, event.payload)

    async def on_cancel(self, payload: dict) -> None:
        execution_id = validated_payload(ExecutionFrameSerializer, payload)["execution_id"]
        execution = await database_sync_to_async(selectors.execution_get)(user=self.user, execution_id=execution_id)
        # Follow first, so that the execution_complete the cancellation causes reaches this socket.
        await self._follow(execution_id)
        await database_sync_to_async(services.execution_cancel)(execution=execution)

    async def _send_event(self, execution_id: str, seq: int, frame_type: str, frame_payload: dict) -> None:
        if seq <= self.sent_seq.get(execution_id, 0):
            return  # already sent (a live event that the replay also contained)
        self.sent_seq[execution_id] = seq
        await self.send_frame(frame_type, frame_payload)

    async def execution_event(self, message: dict) -> None:
        """Channel-layer message: one live event of a followed execution."""
        payload = message["frame"]["payload"]
        await self._send_event(payload["execution_id"], message["seq"], message["frame"]["type"], payload)

    async def execution_events(self, message: dict) -> None:
        """Channel-layer message: several live events of one followed execution, in order."""
        for event in message["events"]:
            payload = event["frame"]["payload"]
            await self._send_event(payload["execution_id"], event["seq"], event["frame"]["type"], payload)
