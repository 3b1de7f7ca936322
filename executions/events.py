"""Execution events: recorded in order (for `subscribe` replays) and published to the channel layer.

A running execution hands its node events to the process's `EventWriter` thread instead of writing
each one itself: the engine never waits on the database or Redis for an event, and the writer
stores whatever has queued up meanwhile in one transaction (one commit, not one per event), then
publishes those events in order. Before an execution's row is marked ended, its queued events are
flushed, so a row that says `completed` always has every event stored.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, close_old_connections, connection, transaction
from django.db.models import Max

from claraverse.channel_layer import group_send_sync

from .models import ExecutionEvent

logger = logging.getLogger("claraverse.executions")

# At most this many events go into one transaction; more waiting simply make the next batch.
MAX_BATCH = 500
# How long a database write of a batch is retried (the database restarting) before the batch is dropped.
WRITE_RETRY_SECONDS = 10.0
FLUSH_TIMEOUT_SECONDS = 30.0


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


def publish_many(execution_id: str, events: list[ExecutionEvent]) -> None:
    """Send several events of one execution in one channel-layer message (one Redis round trip, not one each)."""
    if len(events) == 1:
        publish(execution_id, events[0].seq, events[0].type, events[0].payload)
        return
    frames = [{"seq": event.seq, "frame": {"type": event.type, "payload": event.payload}} for event in events]
    try:
        group_send_sync(execution_group(execution_id), {"type": "execution.events", "events": frames})
    except Exception:
        logger.warning("could not publish %d events of %s", len(events), execution_id, exc_info=True)


class EventWriter:
    """One thread per process that stores queued events in batches and then publishes them."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, event: ExecutionEvent) -> None:
        """Queue an unsaved event row (its `seq` already assigned)."""
        self._ensure_running()
        self._queue.put(event)

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> bool:
        """Wait until everything queued before this call is stored; False on timeout."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def _ensure_running(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="execution-event-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch: list[ExecutionEvent] = []
            markers: list[threading.Event] = []
            item = self._queue.get()
            while True:
                if isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            try:
                if batch:
                    self._store(batch)
            except Exception:
                logger.exception("execution event writer failed on a batch of %d", len(batch))
                batch = []
            finally:
                # A flush waits for storage only: publishing is best effort and follows in order.
                for marker in markers:
                    marker.set()
            by_execution: dict[str, list[ExecutionEvent]] = {}
            for event in batch:  # in order within each execution
                by_execution.setdefault(event.execution_id, []).append(event)
            for execution_id, events in by_execution.items():
                publish_many(execution_id, events)

    @classmethod
    def _store(cls, batch: list[ExecutionEvent]) -> None:
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        while True:
            try:
                with transaction.atomic():
                    ExecutionEvent.objects.bulk_create(batch)
                return
            except (DataError, IntegrityError):
                # One bad row (say, an execution deleted meanwhile) must not cost the others theirs.
                cls._store_one_by_one(batch)
                return
            except Exception:
                # The connection may be broken (the database restarted): take a fresh one next time.
                close_old_connections()
                connection.close()
                if time.monotonic() >= deadline:
                    logger.error("dropping %d execution events: the database is unavailable", len(batch))
                    raise
                time.sleep(0.5)

    @staticmethod
    def _store_one_by_one(batch: list[ExecutionEvent]) -> None:
        for event in batch:
            try:
                with transaction.atomic():
                    event.save(force_insert=True)
            except (DataError, IntegrityError):
                logger.warning("dropping event %s #%s of %s: not storable", event.type, event.seq, event.execution_id)


_writer = EventWriter()


class EventRecorder:
    """Numbers, stores and publishes the events of one execution.

    `background=True` (a running execution, when EXECUTION_EVENTS_IN_BACKGROUND is on) queues them for
    the process's `EventWriter`; call `flush()` before the execution's row is marked ended. Otherwise
    each event is stored at once and published after its transaction commits.
    """

    def __init__(self, execution_id: str, *, background: bool = False, fresh: bool = False):
        self.execution_id = execution_id
        self.background = background and settings.EXECUTION_EVENTS_IN_BACKGROUND
        if fresh:  # just claimed from `pending`: nothing has recorded an event for it yet
            self.seq = 0
            return
        last = ExecutionEvent.objects.filter(execution_id=execution_id).aggregate(last=Max("seq"))["last"]
        self.seq = last or 0

    def record(self, frame_type: str, payload: dict[str, Any]) -> None:
        """Store (or queue) the event; it is published once its row is committed."""
        self.seq += 1
        seq = self.seq
        full = {"execution_id": self.execution_id, **payload}
        if self.background:
            _writer.submit(ExecutionEvent(execution_id=self.execution_id, seq=seq, type=frame_type, payload=full))
            return
        ExecutionEvent.objects.create(execution_id=self.execution_id, seq=seq, type=frame_type, payload=full)
        transaction.on_commit(lambda: publish(self.execution_id, seq, frame_type, full))

    def flush(self) -> None:
        """Make sure every event recorded so far is stored (background mode); publishing follows."""
        if self.background and not _writer.flush():
            logger.warning("execution %s: events still queued after %s s", self.execution_id, FLUSH_TIMEOUT_SECONDS)
