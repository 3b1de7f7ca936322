"""Sending to channel-layer groups from synchronous code (tasks, services), in every deployment.

With Redis any thread may send. In the embedded mode the layer lives in memory inside the web
process and is not thread-safe: a message put there from a worker thread would not wake the
server's event loop. `manage.py serve` therefore registers its loop, and sends from other
threads are handed to that loop.
"""

from __future__ import annotations

import asyncio

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

SEND_TIMEOUT_SECONDS = 5.0
_server_loop: asyncio.AbstractEventLoop | None = None


def use_server_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Register the event loop that serves WebSockets in this process (None to forget it)."""
    global _server_loop
    _server_loop = loop


def group_send_sync(group: str, message: dict) -> None:
    """Send `message` to `group` from synchronous code."""
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _server_loop
    if loop is not None and loop.is_running():
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is not loop:
            asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop).result(SEND_TIMEOUT_SECONDS)
            return
    async_to_sync(layer.group_send)(group, message)
