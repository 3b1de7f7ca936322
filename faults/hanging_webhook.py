"""hanging-webhook: API-triggered executions whose `webhook_url` never answers, or drip-feeds its answer.

Done: two loopback receivers: one accepts the connection, reads the request and says nothing; the other answers
200 with a large declared body and sends one byte every half second, so that no single read ever times out. Two
executions are triggered towards each, with short webhook settings (timeout WEBHOOK_TIMEOUT s, retries after 1 s,
2 s, ...), while other executions keep being triggered without a webhook.

Must hold: the webhook executions complete on time (their callback is not part of them); every delivery attempt
ends within the webhook timeout (plus slack) whatever the receiver does, is recorded in `webhook_deliveries` with
an error, and is retried on the schedule until WEBHOOK_MAX_ATTEMPTS; the other executions keep completing promptly
(the worker is not blocked) and no process died.
"""

from __future__ import annotations

import time

from .infra import (
    FAST_WORKFLOW,
    Deployment,
    RawPeer,
    Services,
    Verdict,
    drip_feed,
    never_answer,
    wait_until,
)

WEBHOOK_TIMEOUT = 2.0
RETRY_BASE = 1
MAX_ATTEMPTS = 3
ATTEMPT_SLACK = 1.5  # seconds an attempt may exceed the timeout (scheduling on two busy cores)
ON_TIME_SECONDS = 5.0  # trigger -> completed for a three-node workflow, however busy the worker is


def run(services: Services, verdict: Verdict) -> None:
    """The scenario; failed checks go into `verdict`."""
    env = {
        "WEBHOOK_TIMEOUT_SECONDS": str(WEBHOOK_TIMEOUT),
        "WEBHOOK_RETRY_BASE_SECONDS": str(RETRY_BASE),
        "WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    }
    with (
        RawPeer(never_answer) as silent,
        RawPeer(drip_feed) as dripping,
        Deployment(services, "hanging-webhook", concurrency=8, extra_env=env) as deployment,
    ):
        token = deployment.register("hanging-webhook@example.com")
        agent = deployment.create_agent(token, "fast", FAST_WORKFLOW)
        key = deployment.create_key(token, [agent])
        receivers = {"silent": silent, "dripping": dripping}
        hooked: dict[str, str] = {}  # execution id -> receiver
        for name, receiver in receivers.items():
            for n in range(2):
                body = {"input": {"n": n}, "webhook_url": receiver.url("/hook")}
                hooked[deployment.trigger_ok(key, agent, body)] = name
        # Other work meanwhile: one execution every 0.3 s while the deliveries hang and retry.
        others = []
        schedule_end = time.monotonic() + WEBHOOK_TIMEOUT * MAX_ATTEMPTS + RETRY_BASE * (2 ** (MAX_ATTEMPTS - 1) - 1)
        while time.monotonic() < schedule_end:
            others.append(deployment.trigger_ok(key, agent, {"input": {"n": 1000 + len(others)}}))
            time.sleep(0.3)

        # --- the executions themselves: on time, whatever their webhook does ---
        rows = deployment.wait_finished(list(hooked) + others, timeout=30)
        for label, ids in (("webhook", list(hooked)), ("other", others)):
            latencies = [(rows[i]["completed_at"] - rows[i]["created_at"]).total_seconds() for i in ids]
            statuses = sorted({rows[i]["status"] for i in ids})
            verdict.check(statuses == ["completed"], f"{label} executions ended {statuses}")
            verdict.check(max(latencies) <= ON_TIME_SECONDS, f"a {label} execution took {max(latencies):.1f} s")
            verdict.figure(f"{label} executions slowest", max(latencies))

        # --- every attempt recorded, with an error, each bounded, on the retry schedule ---
        def all_attempts() -> bool:
            with deployment.db() as conn:
                count = conn.execute(
                    "SELECT count(*) FROM apikeys_webhookdelivery WHERE execution_id = ANY(%s)", (list(hooked),)
                ).fetchone()[0]
            return count >= MAX_ATTEMPTS * len(hooked)

        bound = MAX_ATTEMPTS * (WEBHOOK_TIMEOUT + ATTEMPT_SLACK) + RETRY_BASE * 2**MAX_ATTEMPTS + 10
        wait_until(all_attempts, timeout=bound, what=f"{MAX_ATTEMPTS} recorded attempts per webhook")
        time.sleep(RETRY_BASE * 2**MAX_ATTEMPTS)  # an attempt beyond the maximum would show up by now
        with deployment.db() as conn:
            deliveries = conn.execute(
                "SELECT execution_id, attempt, status_code, error, delivered_at FROM apikeys_webhookdelivery"
                " WHERE execution_id = ANY(%s) ORDER BY execution_id, attempt",
                (list(hooked),),
            ).fetchall()
        longest: dict[str, float] = {}
        for execution_id, receiver_name in hooked.items():
            mine = [d for d in deliveries if d[0] == execution_id]
            verdict.check(
                [d[1] for d in mine] == list(range(1, MAX_ATTEMPTS + 1)),
                f"{receiver_name} webhook of {execution_id}: attempts {[d[1] for d in mine]}",
            )
            accepted = receivers[receiver_name].deliveries()
            previous_end = None
            for _, attempt, status_code, error, delivered_at in mine:
                verdict.check(error, f"{receiver_name} attempt {attempt} recorded no error (status {status_code})")
                started = accepted.get(f"{execution_id}:{attempt}")
                if not verdict.check(started, f"{receiver_name} attempt {attempt} never reached the receiver"):
                    continue
                ended = delivered_at.timestamp()
                longest[receiver_name] = max(longest.get(receiver_name, 0.0), ended - started)
                verdict.check(
                    ended - started <= WEBHOOK_TIMEOUT + ATTEMPT_SLACK,
                    f"{receiver_name} attempt {attempt} lasted {ended - started:.1f} s (timeout {WEBHOOK_TIMEOUT:g} s)",
                )
                if previous_end is not None:
                    wanted = RETRY_BASE * 2 ** (attempt - 2)
                    verdict.check(
                        wanted - 0.5 <= started - previous_end <= wanted + 5,
                        f"{receiver_name} attempt {attempt} came {started - previous_end:.1f} s after the previous"
                        f" one (schedule: {wanted} s)",
                    )
                previous_end = ended
        errors = sorted({f"{hooked[d[0]]}: {d[3][:60]}" for d in deliveries})
        verdict.figure("errors", "; ".join(errors), "")
        for receiver_name, seconds in longest.items():
            verdict.figure(f"{receiver_name} attempt longest", seconds)
        verdict.figure("other executions during deliveries", len(others), "")
        verdict.check(not deployment.dead_processes(), f"processes died: {deployment.dead_processes()}")
