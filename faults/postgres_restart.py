"""postgres-restart: stop PostgreSQL (fast shutdown) under traffic, start it again.

Done: two web processes (as behind a load balancer), one worker, one beat. A REST probe polls the first web process
while the second stays idle; executions run (some mid-way through a delay node, one long enough to outlive the
outage) and more are triggered while the database is down. PostgreSQL is stopped like `pg_ctl stop -m fast`
(every connection of every pool is cut), left down DOWN_SECONDS and started again on the same port and data.

Must hold: `/health` answers 503 with its body (status `degraded`, database `down`) within a few seconds while the
database is down, and 200 `healthy` soon after it is back; REST calls answer 503 SERVICE_UNAVAILABLE (never 500,
never after more than DOWN_ANSWER_BOUND_SECONDS) while it is down — or are served once it is back — and 2xx from
then on, including the first calls to the idle web process (no dead pooled connection handed out); every execution
ends, each with one final status (the worker and the reaper never both end one), executions triggered after
recovery complete (the worker's pool recovered too), and no process died.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from .clients import RestProbe
from .infra import (
    FAST_WORKFLOW,
    RECOVERY_BOUND_SECONDS,
    Deployment,
    Services,
    Verdict,
    delay_workflow,
    http_call,
    wait_until,
)

DOWN_SECONDS = 12.0  # longer than DATABASE_POOL_TIMEOUT (10 s), so that requests waiting on the pool give up
LONG_SECONDS = DOWN_SECONDS + 12  # an execution still running when the database is back
DOWN_ANSWER_BOUND_SECONDS = 13.0  # DATABASE_POOL_TIMEOUT (10 s) plus slack
# /health gives up on the database after 2 s, and runs on threads of its own (never behind request threads that
# wait on the pool for DATABASE_POOL_TIMEOUT while the database is down).
HEALTH_DOWN_BOUND_SECONDS = 4.0  # /health has its own threads and waits at most 2 s for a connection
HEALTHY_BOUND_SECONDS = 20.0
REST_AFTER = ("/api/agents", "/api/executions", "/api/keys", "/api/auth/me", "/api/models", "/api/memories")


def run(services: Services, verdict: Verdict) -> None:
    """The scenario; failed checks go into `verdict`."""
    with Deployment(services, "postgres-restart", concurrency=4, web_processes=2) as deployment:
        token = deployment.register("postgres-restart@example.com")
        slow_agent = deployment.create_agent(token, "slow", delay_workflow(3))
        long_agent = deployment.create_agent(token, "long", delay_workflow(LONG_SECONDS))
        fast_agent = deployment.create_agent(token, "fast", FAST_WORKFLOW)
        key = deployment.create_key(token, [slow_agent, long_agent, fast_agent])
        # The second web process serves a burst now, then nothing until the database is back: its pool holds
        # connections that the shutdown cut, which it must not hand out afterwards.
        burst = burst_on_second_web(deployment, token)
        verdict.check(all(s == 200 for s in burst), f"the second web process answered {burst} before the outage")
        long_running = deployment.trigger_ok(key, long_agent)
        before = [deployment.trigger_ok(key, slow_agent) for _ in range(3)]
        before += [deployment.trigger_ok(key, fast_agent, {"input": {"n": n}}) for n in range(3)]

        with (
            RestProbe(deployment, token, "/api/agents", interval=0.5, timeout=30) as probe,
            ThreadPoolExecutor(max_workers=16) as calls,
        ):
            time.sleep(1.5)  # the slow executions are in their delay node now
            down_at = time.monotonic()
            verdict.figure("fast shutdown", services.postgres.stop("fast"))
            health_calls, trigger_calls = [], []
            while time.monotonic() - down_at < DOWN_SECONDS:
                health_calls.append((time.monotonic(), calls.submit(http_call, "GET", deployment.url("/health"))))
                trigger_calls.append((time.monotonic(), calls.submit(deployment.trigger, key, fast_agent, None, 30)))
                time.sleep(1.0)
            services.postgres.start()
            up_at = time.monotonic()
            wait_until(
                lambda: http_call("GET", deployment.url("/health"), timeout=15)[1].get("status") == "healthy",
                timeout=HEALTHY_BOUND_SECONDS,
                what="/health healthy after PostgreSQL came back",
            )
            verdict.figure("healthy after PostgreSQL up", time.monotonic() - up_at)
            burst = burst_on_second_web(deployment, token)
            health_down = [(sent, future.result()) for sent, future in health_calls]
            triggers_down = [(sent, future.result()) for sent, future in trigger_calls]
            time.sleep(2)  # some probe calls after recovery

        # --- /health while down: a quick 503 with its body ---
        answered_down = [
            (status, body, seconds) for sent, (status, body, seconds) in health_down if sent + seconds < up_at
        ]
        verdict.check(answered_down, "no /health answer came while PostgreSQL was down")
        for status, body, _seconds in answered_down:
            body_ok = isinstance(body, dict) and body.get("checks", {}).get("database") == "down"
            if not verdict.check(status == 503 and body_ok, f"/health while down answered {status} {str(body)[:200]}"):
                break
        slowest_health = max(seconds for _, (_, _, seconds) in health_down)
        fastest_health = min(seconds for _, (_, _, seconds) in health_down)
        verdict.figure(
            "health while down", f"{len(answered_down)}x503 in {fastest_health:.1f}-{slowest_health:.1f}", "s"
        )
        verdict.check(slowest_health <= HEALTH_DOWN_BOUND_SECONDS, f"/health took {slowest_health:.1f} s while down")

        # --- REST and triggers while down: 503 envelopes (or served once back), never 500, bounded ---
        def judge(label: str, answers: list[tuple[int, str, float]], ok_status: int) -> None:
            wrong = [a for a in answers if a[0] != ok_status and not (a[0] == 503 and a[1] == "SERVICE_UNAVAILABLE")]
            verdict.check(not wrong, f"{label} while down answered other than 503/{ok_status}: {wrong[:2]}")
            slowest = max((a[2] for a in answers), default=0.0)
            verdict.check(slowest <= DOWN_ANSWER_BOUND_SECONDS, f"{label} took {slowest:.1f} s while down")
            unavailable = sum(a[0] == 503 for a in answers)
            verdict.figure(f"{label} while down", f"{unavailable}x503 {len(answers) - unavailable}x{ok_status}", "")

        judge(
            "triggers",
            [(s, (b or {}).get("code", "") if isinstance(b, dict) else "", t) for _, (s, b, t) in triggers_down],
            202,
        )
        sent_down = [c for c in probe.calls if c.at < up_at and c.at + c.seconds > down_at]  # overlapping the outage
        verdict.check(sent_down, "the REST probe made no call while PostgreSQL was down")
        judge("REST", [(c.status, c.code, c.seconds) for c in sent_down], 200)
        verdict.check(
            any(c.status == 503 for c in sent_down) or any(s == 503 for _, (s, _, _) in triggers_down),
            "no REST call or trigger got its 503 while PostgreSQL was down",
        )

        # --- after: 2xx from the first call on, in both web processes ---
        after_calls = [c for c in probe.calls if c.at >= up_at]
        failing_after = [c for c in after_calls if c.status != 200]
        verdict.check(after_calls and not failing_after, f"REST calls after recovery failed: {failing_after[:2]}")
        verdict.check(
            all(s == 200 for s in burst), f"the idle web process answered {burst} on its first calls after recovery"
        )
        for path in REST_AFTER:
            status, payload, _ = http_call("GET", deployment.url(path), token=token)
            verdict.check(200 <= status < 300, f"GET {path} after recovery answered {status}: {str(payload)[:200]}")

        # --- executions: all end, once; the worker's pool recovered ---
        accepted_down = [b["execution_id"] for _, (s, b, _) in triggers_down if s == 202]
        after = [deployment.trigger_ok(key, fast_agent, {"input": {"n": 100 + n}}) for n in range(3)]
        after.append(deployment.trigger_ok(key, slow_agent))
        rows = deployment.wait_finished(before + accepted_down + after, timeout=RECOVERY_BOUND_SECONDS + 10)
        verdict.figure("executions ended after PostgreSQL up", time.monotonic() - up_at)
        broken_after = {i: (rows[i]["status"], rows[i]["error"]) for i in after if rows[i]["status"] != "completed"}
        verdict.check(not broken_after, f"executions triggered after recovery did not complete: {broken_after}")
        verdict.figure("executions across the outage", ",".join(sorted({rows[i]["status"] for i in before})), "")
        deployment.wait_finished([long_running], timeout=LONG_SECONDS + RECOVERY_BOUND_SECONDS)
        time.sleep(2)  # a late second ending would show up by now
        for execution_id in [long_running, *before]:
            check_single_ending(deployment, execution_id, verdict)
        verdict.check(not deployment.dead_processes(), f"processes died: {deployment.dead_processes()}")


def burst_on_second_web(deployment: Deployment, token: str, calls: int = 8) -> list[int]:
    """`calls` concurrent GET /api/agents on the second web process; their statuses."""

    def one(_index: int) -> int:
        return http_call("GET", deployment.url("/api/agents", web=1), token=token, timeout=30)[0]

    with ThreadPoolExecutor(max_workers=calls) as pool:
        return list(pool.map(one, range(calls)))


def check_single_ending(deployment: Deployment, execution_id: str, verdict: Verdict) -> None:
    """At most one `execution_complete` event, agreeing with the row: the worker and the reaper did not both end it.

    (Events of an execution that ended while the database was down may be lost; the row is the truth.)
    """
    with deployment.db() as conn:
        status = conn.execute("SELECT status FROM executions_execution WHERE id = %s", (execution_id,)).fetchone()[0]
        endings = [
            row[0]
            for row in conn.execute(
                "SELECT payload->>'status' FROM executions_executionevent WHERE execution_id = %s"
                " AND type = 'execution_complete' ORDER BY seq",
                (execution_id,),
            ).fetchall()
        ]
    verdict.check(
        endings in ([status], []), f"execution {execution_id} ended {status} with completion events {endings}"
    )
