"""redis-restart: kill Redis (no persistence: everything in it is lost) under chat and execution traffic, start it
again on the same port.

Done: two chat conversations stream over `/ws/chat` without pause and a REST probe polls; executions are triggered
before (some still running, some still queued), during and after the outage. Redis is SIGKILLed, left down for a
few seconds and started again, empty.

Must hold: `/health` answers 200 `degraded` while Redis is down and `healthy` soon after it is back; the chat
sockets keep working or are replaced by new ones, and a new message on a new socket completes with the history of
the conversation intact; every execution, whenever it was triggered, ends (those whose queue message was lost are
re-enqueued by the reaper) and completes; triggers during the outage are accepted (not 5xx); live execution
events reach `/ws/workflow` again; no REST call answers 5xx, during or after.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.support.llm_server import LLMServer, Reply

from .clients import ChatDriver, RestProbe, open_chat_socket
from .infra import (
    FAST_WORKFLOW,
    RECOVERY_BOUND_SECONDS,
    Deployment,
    Services,
    Verdict,
    delay_workflow,
    expect,
    http_call,
    wait_until,
)

MODEL = "faults/model"
DOWN_SECONDS = 5.0
HEALTHY_BOUND_SECONDS = 15.0  # Redis back -> /health healthy
REST_AFTER = ("/api/agents", "/api/executions", "/api/keys", "/api/auth/me", "/api/models", "/api/memories")


def run(services: Services, verdict: Verdict) -> None:
    """The scenario; failed checks go into `verdict`."""
    answer = Reply(text=" ".join(f"w{i}" for i in range(20)), chunks=20, chunk_interval=0.08)
    with LLMServer(default_reply=answer) as llm, Deployment(services, "redis-restart", concurrency=4) as deployment:
        deployment.add_model(deployment.admin_token(), base_url=llm.base_url("/v1"), model_id=MODEL)
        token = deployment.register("redis-restart@example.com")
        slow_agent = deployment.create_agent(token, "slow", delay_workflow(4))
        fast_agent = deployment.create_agent(token, "fast", FAST_WORKFLOW)
        key = deployment.create_key(token, [slow_agent, fast_agent])

        with (
            ChatDriver(deployment, token, MODEL, count=2) as chats,
            RestProbe(deployment, token, "/api/agents") as probe,
        ):
            wait_until(
                lambda: all(any(t.outcome == "done" for t in c.turns) for c in chats.conversations),
                timeout=30,
                what="a first chat answer in every conversation",
            )
            # Four 4-second runs on four slots, then four more that wait in the queue: both kinds meet the outage.
            before = [deployment.trigger_ok(key, slow_agent) for _ in range(8)]
            before += [deployment.trigger_ok(key, fast_agent, {"input": {"n": n}}) for n in range(2)]
            time.sleep(1.0)

            down_at = time.monotonic()
            services.redis.kill()
            during, health_down = [], []
            while time.monotonic() - down_at < DOWN_SECONDS:
                status, payload, seconds = http_call("GET", deployment.url("/health"), timeout=20)
                health_down.append((status, payload, seconds))
                status, payload, _ = deployment.trigger(key, fast_agent, {"input": {"n": 100 + len(during)}})
                during.append((status, payload))
                time.sleep(0.3)
            services.redis.start()
            up_at = time.monotonic()
            wait_until(
                lambda: http_call("GET", deployment.url("/health"), timeout=10)[1].get("status") == "healthy",
                timeout=HEALTHY_BOUND_SECONDS,
                what="/health healthy after Redis came back",
            )
            verdict.figure("healthy after Redis up", time.monotonic() - up_at)
            after = [deployment.trigger_ok(key, fast_agent, {"input": {"n": 200 + n}}) for n in range(3)]
            after.append(deployment.trigger_ok(key, slow_agent))
            # Let the conversations carry on for a while on the restarted Redis.
            wait_until(
                lambda: all(
                    any(t.outcome == "done" and t.started > up_at for t in c.turns) for c in chats.conversations
                ),
                timeout=30,
                what="a chat answer in every conversation after Redis came back",
            )

        # --- /health while down ---
        verdict.check(health_down, "no /health answer was taken while Redis was down")
        for status, payload, _seconds in health_down:
            state = payload.get("status") if isinstance(payload, dict) else None
            if not verdict.check(
                status == 200 and state == "degraded",
                f"/health while Redis down answered {status} {str(payload)[:200]}",
            ):
                break
        verdict.figure("health while down", max(s for _, _, s in health_down))
        verdict.check(
            max(s for _, _, s in health_down) < 3,
            "/health took 3 s or more while Redis was down (a probe would time out)",
        )

        # --- triggers during the outage ---
        accepted = [p["execution_id"] for s, p in during if s == 202 and isinstance(p, dict) and "execution_id" in p]
        refused = [(s, str(p)[:120]) for s, p in during if s != 202]
        verdict.check(
            not refused, f"{len(refused)} of {len(during)} triggers during the outage failed, first {refused[:1]}"
        )
        verdict.figure("triggers during outage", f"{len(accepted)}/{len(during)} accepted", "")

        # --- every execution ends, and completes ---
        everything = before + accepted + after
        started = time.monotonic()
        rows = deployment.wait_finished(everything, timeout=RECOVERY_BOUND_SECONDS + 20)
        verdict.figure("executions ended after Redis up", time.monotonic() - up_at)
        not_completed = {i: (r["status"], r["error"]) for i, r in rows.items() if r["status"] != "completed"}
        verdict.check(
            not not_completed, f"{len(not_completed)} executions did not complete: {list(not_completed.values())[:3]}"
        )
        del started

        # --- chat: sockets kept working or were replaced; a new message on a new socket completes with history ---
        final = chats.final_turns()
        for turn in final:
            verdict.check(
                turn.outcome == "done", f"final chat turn of {turn.conversation_id}: {turn.outcome} {turn.detail}"
            )
        replaced = sum(max(0, c.sockets - 2) for c in chats.conversations)  # minus the first and the final socket
        failed_turns = [t for c in chats.conversations for t in c.turns if t.outcome != "done"]
        verdict.figure("chat turns", sum(len(c.turns) for c in chats.conversations), "")
        outcomes = sorted({t.outcome for t in failed_turns})
        verdict.figure("chat turns interrupted", f"{len(failed_turns)} {outcomes}" if failed_turns else "0", "")
        verdict.figure("chat sockets replaced", replaced, "")
        for conversation in chats.conversations:
            check_history(deployment, token, llm, conversation, verdict)

        # --- live events reach /ws/workflow again (the channel layer recovered in web and worker) ---
        check_live_events(deployment, token, fast_agent, verdict)

        # --- REST: no 5xx during or after ---
        server_errors = [c for c in probe.calls if c.status >= 500 or c.status == 0]
        verdict.check(
            not server_errors,
            f"{len(server_errors)} REST probe calls failed (5xx/no answer), first {server_errors[:1]}",
        )
        for path in REST_AFTER:
            status, payload, _ = http_call("GET", deployment.url(path), token=token)
            verdict.check(status < 500, f"GET {path} after recovery answered {status}: {str(payload)[:200]}")
        status, payload, _ = http_call("POST", deployment.url("/api/agents"), {"name": "after"}, token=token)
        verdict.check(status == 201, f"POST /api/agents after recovery answered {status}: {str(payload)[:200]}")


def check_history(deployment: Deployment, token: str, llm: LLMServer, conversation: Any, verdict: Verdict) -> None:
    """Every completed turn is stored, in order, and the final turn's prompt carried them all."""
    chat = expect("GET", deployment.url(f"/api/chats/{conversation.conversation_id}"), token=token)
    stored = [m.get("content") for m in chat.get("messages", []) if m.get("role") == "user"]
    done = [t.message for t in conversation.turns if t.outcome == "done"]
    kept = [message for message in stored if message in done]
    verdict.check(
        kept == done,
        f"{conversation.conversation_id}: stored history {len(kept)} of {len(done)} completed turns, in order",
    )
    final = done[-1] if done else None
    prompts = [r.body for r in llm.chat_requests if isinstance(r.body, dict)]
    mine = [p for p in prompts if p.get("messages") and p["messages"][-1].get("content") == final]
    if verdict.check(mine, f"{conversation.conversation_id}: the final turn never reached the provider"):
        sent = [m.get("content") for m in mine[-1]["messages"] if m.get("role") == "user"]
        verdict.check(
            all(message in sent for message in done),
            f"{conversation.conversation_id}: the final prompt lacked earlier turns ({len(sent)} user messages sent)",
        )


def check_live_events(deployment: Deployment, token: str, agent_id: str, verdict: Verdict) -> None:
    """`execute` over /ws/workflow: the execution_complete event must arrive live (through Redis)."""

    async def execute() -> str:
        ws = await open_chat_socket(deployment.ws_url("/ws/workflow", token))
        try:
            await ws.send(json.dumps({"type": "execute", "payload": {"agent_id": agent_id, "input": {"n": 1}}}))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
                if frame.get("type") == "execution_complete":
                    return str((frame.get("payload") or {}).get("status"))
                if frame.get("type") == "error":
                    return f"error {frame.get('payload')}"
            return "no execution_complete within 20 s"
        finally:
            await ws.close()

    try:
        outcome = asyncio.run(execute())
    except Exception as exc:
        outcome = repr(exc)[:200]
    verdict.check(outcome == "completed", f"/ws/workflow after recovery: {outcome}")
