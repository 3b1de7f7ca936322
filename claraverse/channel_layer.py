"""Sending to channel-layer groups from synchronous code (tasks, services), in every deployment.

In the embedded mode the layer lives in memory inside the web process and is not thread-safe: a
message put there from a worker thread would not wake the server's event loop. `manage.py serve`
therefore registers its loop, and sends from other threads are handed to that loop.

Elsewhere (Celery workers with Redis) every send would otherwise pay for `async_to_sync`: a new
thread, a new event loop and a new Redis connection per message. Sends go instead through one
long-lived event loop per process, running in a background thread, so connections are reused.
"""

from __future__ import annotations

import asyncio
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

SEND_TIMEOUT_SECONDS = 5.0
_server_loop: asyncio.AbstractEventLoop | None = None
_sender_loop: asyncio.AbstractEventLoop | None = None
_sender_pid: int | None = None
_sender_lock = threading.Lock()


def use_server_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Register the event loop that serves WebSockets in this process (None to forget it)."""
    global _server_loop
    _server_loop = loop


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _sender() -> asyncio.AbstractEventLoop:
    """This process's background sending loop (made again after a fork, which does not copy threads)."""
    global _sender_loop, _sender_pid
    with _sender_lock:
        if _sender_loop is None or _sender_pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="channel-layer-sender", daemon=True).start()
            _sender_loop, _sender_pid = loop, os.getpid()
        return _sender_loop


def group_send_sync(group: str, message: dict) -> None:
    """Send `message` to `group` from synchronous code."""
    layer = get_channel_layer()
    if layer is None:
        return
    current = _running_loop()
    if _server_loop is not None and _server_loop.is_running() and current is not _server_loop:
        asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _server_loop).result(SEND_TIMEOUT_SECONDS)
        return
    if isinstance(layer, InMemoryChannelLayer) or current is not None:
        # The in-memory layer belongs to the loop of its consumers (tests); async_to_sync reaches it.
        async_to_sync(layer.group_send)(group, message)
        return
    asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _sender()).result(SEND_TIMEOUT_SECONDS)
