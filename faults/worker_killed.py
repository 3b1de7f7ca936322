"""worker-killed: SIGKILL a Celery worker while it runs long executions, then start a new one.

Done: one worker (threads pool, 2 slots) runs two executions whose `http_request` node waits on a loopback peer
that never answers in time; four short executions queue behind them. The worker's process group is killed with
SIGKILL (no shutdown, no message given back) and a new worker is started.

Must hold: the two long executions end within RECOVERY_BOUND_SECONDS of the kill, failed with a clear error (or
completed, had they been resumed), never left `running`/`pending`; the queued executions and ones triggered after
the kill all complete.
"""

from __future__ import annotations

import time

from tests.support.http_peer import Answer, HTTPPeer

from .infra import (
    FAST_WORKFLOW,
    RECOVERY_BOUND_SECONDS,
    Deployment,
    Services,
    Verdict,
    chain,
    node,
    wait_until,
)

SLOW_SECONDS = 300  # the peer holds its answer longer than the scenario lasts


def run(services: Services, verdict: Verdict) -> None:
    """The scenario; failed checks go into `verdict`."""
    with HTTPPeer() as peer, Deployment(services, "worker-killed", workers=1, concurrency=2) as deployment:
        peer.on("GET", "/slow", Answer(json={"ok": True}, delay=SLOW_SECONDS))
        slow_workflow = chain(
            node("start", "trigger", trigger_type="api"),
            node("call", "http_request", method="GET", url=peer.url("/slow"), timeout_ms=SLOW_SECONDS * 1000),
            node("out", "output", value="{{ nodes.call.status }}"),
        )
        token = deployment.register("worker-killed@example.com")
        slow_agent = deployment.create_agent(token, "slow", slow_workflow)
        fast_agent = deployment.create_agent(token, "fast", FAST_WORKFLOW)
        key = deployment.create_key(token, [slow_agent, fast_agent])

        slow = [deployment.trigger_ok(key, slow_agent) for _ in range(2)]
        wait_until(
            lambda: (
                all(r["status"] == "running" for r in deployment.execution_rows(slow).values())
                and len(peer.requests) >= 2
            ),
            timeout=30,
            what="both long executions running and waiting on the peer",
        )
        queued = [deployment.trigger_ok(key, fast_agent, {"input": {"n": n}}) for n in range(4)]
        time.sleep(1)
        waiting = [r["status"] for r in deployment.execution_rows(queued).values()]
        verdict.check(
            all(status == "pending" for status in waiting),
            f"the short executions should queue behind the busy worker, they are {waiting}",
        )

        killed_at = time.monotonic()
        deployment.kill_worker(deployment.workers[0])
        after_kill = [deployment.trigger_ok(key, fast_agent, {"input": {"n": 10 + n}}) for n in range(2)]
        deployment.start_worker()
        verdict.figure("new worker ready", time.monotonic() - killed_at)

        everything = slow + queued + after_kill
        rows = deployment.wait_finished(everything, timeout=RECOVERY_BOUND_SECONDS + 10)
        ended = time.monotonic() - killed_at
        verdict.figure("all ended after kill", ended)
        verdict.check(ended <= RECOVERY_BOUND_SECONDS, f"ending took {ended:.1f} s > {RECOVERY_BOUND_SECONDS} s")
        for execution_id in slow:
            row = rows[execution_id]
            clear = row["status"] == "completed" or (row["status"] == "failed" and "stopped responding" in row["error"])
            verdict.check(clear, f"long execution {execution_id} ended {row['status']} with error {row['error']!r}")
        for execution_id in queued + after_kill:
            row = rows[execution_id]
            verdict.check(
                row["status"] == "completed", f"short execution {execution_id} ended {row['status']}: {row['error']!r}"
            )
        verdict.figure("long executions", ",".join(sorted({rows[i]["status"] for i in slow})), "")
        # One more round through the new worker: the deployment is whole again.
        final = [deployment.trigger_ok(key, fast_agent, {"input": {"n": 99}})]
        rows = deployment.wait_finished(final, timeout=20)
        verdict.check(rows[final[0]]["status"] == "completed", "an execution after recovery did not complete")
