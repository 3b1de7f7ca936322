"""Traffic that runs while a fault happens: chat conversations over `/ws/chat` and a REST probe.

Both run in background threads, are bounded in time, and record what they saw for the scenario's checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .infra import Deployment, http_call

FRAME_TIMEOUT = 20.0  # seconds any one expected chat frame may take


@dataclass
class Turn:
    """One chat message and how it ended: `done`, `error` (an error frame), `closed` (the socket went) or `timeout`."""

    conversation_id: str
    message: str
    outcome: str = ""
    detail: str = ""
    socket: int = 0  # which socket of the conversation carried it (1 = the first)
    started: float = 0.0
    ended: float = 0.0


@dataclass
class Conversation:
    """One conversation's turns and sockets."""

    conversation_id: str
    turns: list[Turn] = field(default_factory=list)
    sockets: int = 0
    connect_failures: int = 0


async def chat_turn(ws: Any, conversation_id: str, message: str, model: str) -> tuple[str, str]:
    """Send one `chat` frame and read its frames until the final one: (outcome, detail)."""
    from websockets.exceptions import ConnectionClosed

    payload = {"conversation_id": conversation_id, "message": message, "model": model, "stream": True}
    try:
        await ws.send(json.dumps({"type": "chat", "payload": payload}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT))
            body = frame.get("payload") or {}
            if body.get("conversation_id") not in (None, conversation_id):
                continue
            if frame.get("type") == "error":
                return "error", f"{body.get('code')}: {body.get('error')}"
            if frame.get("type") == "stream" and body.get("done"):
                return "done", ""
    except ConnectionClosed as exc:
        return "closed", repr(exc)[:200]
    except TimeoutError:
        return "timeout", f"no frame within {FRAME_TIMEOUT:.0f} s"


async def open_chat_socket(url: str) -> Any:
    """An open `/ws/chat` socket that answered a ping."""
    from websockets.asyncio.client import connect

    ws = await connect(url, proxy=None, open_timeout=10, ping_interval=None, close_timeout=2)
    try:
        await ws.send(json.dumps({"type": "ping", "payload": {}}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame.get("type") != "pong":
            raise ConnectionError(f"expected pong, got {str(frame)[:200]}")
    except BaseException:
        await ws.close()
        raise
    return ws


class ChatDriver:
    """`count` conversations, each sending its next message when the previous answer ended, over one socket that
    is replaced by a new one whenever it closes. Runs in its own thread with its own event loop until `stop()`."""

    def __init__(self, deployment: Deployment, token: str, model: str, count: int = 2, prefix: str = "faults"):
        self.url = deployment.ws_url("/ws/chat", token)
        self.model = model
        self.conversations = [Conversation(f"{prefix}-chat-{index}") for index in range(count)]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="chat-driver", daemon=True)

    def __enter__(self) -> ChatDriver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Let every conversation finish its current turn, then end (bounded)."""
        self._stopping.set()
        self._thread.join(FRAME_TIMEOUT + 15)

    async def _main(self) -> None:
        await asyncio.gather(*(self._converse(conversation) for conversation in self.conversations))

    async def _converse(self, conversation: Conversation) -> None:
        ws = None
        try:
            while not self._stopping.is_set():
                if ws is None:
                    try:
                        ws = await open_chat_socket(self.url)
                        conversation.sockets += 1
                    except Exception:
                        conversation.connect_failures += 1
                        await asyncio.sleep(0.5)
                        continue
                turn = Turn(
                    conversation.conversation_id, f"{conversation.conversation_id} turn {len(conversation.turns)}"
                )
                turn.socket, turn.started = conversation.sockets, time.monotonic()
                turn.outcome, turn.detail = await chat_turn(ws, conversation.conversation_id, turn.message, self.model)
                turn.ended = time.monotonic()
                conversation.turns.append(turn)
                if turn.outcome in ("closed", "timeout"):
                    with contextlib.suppress(Exception):
                        await ws.close()
                    ws = None
                await asyncio.sleep(0.1)
        finally:
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()

    def final_turns(self) -> list[Turn]:
        """One more turn per conversation, each on a new socket (after the fault): must end `done`."""

        async def one(conversation: Conversation) -> Turn:
            turn = Turn(conversation.conversation_id, f"{conversation.conversation_id} final")
            turn.started = time.monotonic()
            try:
                ws = await open_chat_socket(self.url)
            except Exception as exc:
                turn.outcome, turn.detail = "connect-failed", repr(exc)[:200]
                return turn
            conversation.sockets += 1
            turn.socket = conversation.sockets
            try:
                turn.outcome, turn.detail = await chat_turn(ws, conversation.conversation_id, turn.message, self.model)
            finally:
                await ws.close()
            turn.ended = time.monotonic()
            conversation.turns.append(turn)
            return turn

        async def every() -> list[Turn]:
            return list(await asyncio.gather(*(one(c) for c in self.conversations)))

        return asyncio.run(every())


@dataclass
class ProbeCall:
    """One REST call of the probe."""

    at: float  # monotonic time it was sent
    status: int  # 0: no answer
    seconds: float
    code: str = ""  # the error envelope's code, if any


class RestProbe:
    """Calls GET `path` (authenticated) every `interval` seconds in a thread and records every answer."""

    def __init__(self, deployment: Deployment, token: str, path: str, interval: float = 0.5, timeout: float = 30):
        self.url = deployment.url(path)
        self.token = token
        self.interval = interval
        self.timeout = timeout
        self.calls: list[ProbeCall] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rest-probe", daemon=True)

    def __enter__(self) -> RestProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(self.timeout + 5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            began = time.monotonic()
            status, payload, seconds = http_call("GET", self.url, token=self.token, timeout=self.timeout)
            code = payload.get("code", "") if isinstance(payload, dict) else ""
            self.calls.append(ProbeCall(began, status, seconds, str(code)))
            self._stopping.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def between(self, start: float, end: float) -> list[ProbeCall]:
        """The calls sent in [start, end)."""
        return [call for call in self.calls if start <= call.at < end]
