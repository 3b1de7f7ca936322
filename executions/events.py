"""Execution events: recorded in order (for `subscribe` replays) and published to the channel layer."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Max

from claraverse.channel_layer import group_send_sync

from .models import ExecutionEvent

logger = logging.getLogger("claraverse.executions")


def execution_group(execution_id: str) -> str:
    """The channel-layer group of one execution's live events."""
    return f"execution.{execution_id}"


def publish(execution_id: str, seq: int, frame_type: str, payload: dict[str, Any]) -> None:
    """Send one event to the execution's subscribers (best effort: the database copy is the truth)."""
    message = {"type": "execution.event", "seq": seq, "frame": {"type": frame_type, "payload": payload}}
    try:
        group_send_sync(execution_group(execution_id), message)
    except Exception:
        # A channel-layer outage must not fail the execution; subscribers can replay from the database.
        logger.warning("could not publish %s of %s", frame_type, execution_id, exc_info=True)


class EventRecorder:
    """Numbers, stores and publishes the events of one execution."""

    def __init__(self, execution_id: str):
        self.execution_id = execution_id
        last = ExecutionEvent.objects.filter(execution_id=execution_id).aggregate(last=Max("seq"))["last"]
        self.seq = last or 0

    def record(self, frame_type: str, payload: dict[str, Any]) -> None:
        """Store the event, then publish it once the row is committed."""
        self.seq += 1
        seq = self.seq
        full = {"execution_id": self.execution_id, **payload}
        ExecutionEvent.objects.create(execution_id=self.execution_id, seq=seq, type=frame_type, payload=full)
        transaction.on_commit(lambda: publish(self.execution_id, seq, frame_type, full))
