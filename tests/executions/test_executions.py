"""Executions: REST lists, details, stats, cancel; node runners; recovery and retention (CONTRACT §4)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from executions.models import Execution, ExecutionEvent
from executions.run import execute_execution
from executions.services import execution_create, executions_prune, executions_reap_stale
from tests.executions.helpers import agent_with_workflow, edge, node
from tests.matrix import AccessCase, assert_access_matrix, assert_envelope
from tests.support.live_server import PROJECT_ROOT
from tests.support.llm_server import Reply, create_model, create_provider

pytestmark = pytest.mark.django_db(transaction=True)

TRIGGER = node("start", "trigger", trigger_type="manual")


def run(user, nodes, edges, input=None, **create):
    agent = agent_with_workflow(user, nodes, edges)
    execution = execution_create(user=user, agent=agent, trigger="api", input=input or {}, enqueue=False, **create)
    return execute_execution(execution_id=execution.id)


class TestRest:
    def test_list_get_and_filters(self, user, auth_client, other_client):
        done = run(
            user, [TRIGGER, node("out", "output", value="{{ input.x }}")], [edge("start", "out")], input={"x": "hi"}
        )
        assert done.status == "completed" and done.output == "hi"
        failed = run(
            user,
            [TRIGGER, node("bad", "tool", tool="calculate_math", arguments={"expression": "1/0"})],
            [edge("start", "bad")],
        )
        assert failed.status == "failed" and "bad" in failed.error
        body = auth_client.get("/api/executions").json()
        assert [e["id"] for e in body["executions"]] == [failed.id, done.id] and body["total"] == 2
        assert auth_client.get("/api/executions?status=failed").json()["total"] == 1
        assert auth_client.get(f"/api/executions?agent_id={done.agent_id}").json()["executions"][0]["id"] == done.id
        assert auth_client.get("/api/executions?trigger=schedule").json()["total"] == 0
        assert auth_client.get(f"/api/agents/{done.agent_id}/executions?status=completed").json()["total"] == 1
        for query in ["status=weird", "trigger=x", "limit=0", "limit=101", "offset=-3"]:
            assert_envelope(auth_client.get(f"/api/executions?{query}"), 400, "VALIDATION_ERROR")
        detail = auth_client.get(f"/api/executions/{done.id}").json()
        assert set(detail) == {
            "id",
            "agent_id",
            "status",
            "trigger",
            "input",
            "output",
            "error",
            "duration_ms",
            "started_at",
            "completed_at",
            "created_at",
            "workflow_version",
            "node_results",
            "webhook_deliveries",
        }
        assert detail["error"] is None and detail["workflow_version"] == 1
        assert set(detail["node_results"][0]) == {
            "node_id",
            "node_type",
            "status",
            "output",
            "error",
            "started_at",
            "completed_at",
            "duration_ms",
            "attempts",
        }
        assert other_client.get("/api/executions").json()["total"] == 0
        assert_access_matrix(AccessCase("get", f"/api/executions/{done.id}"), owner=auth_client, other=other_client)

    def test_stats(self, user, auth_client):
        agent = agent_with_workflow(user, [TRIGGER], [])
        for _ in range(3):
            execute_execution(execution_id=execution_create(user=user, agent=agent, trigger="api", enqueue=False).id)
        Execution.objects.create(user=user, agent_id=agent.id, trigger="schedule", status="failed", duration_ms=1000)
        stats = auth_client.get(f"/api/agents/{agent.id}/executions/stats").json()
        assert stats["total"] == 4 and stats["by_status"]["completed"] == 3 and stats["by_status"]["failed"] == 1
        assert stats["by_trigger"]["api"] == 3 and stats["by_trigger"]["schedule"] == 1
        assert stats["success_rate"] == 0.75 and stats["p95_duration_ms"] == 1000
        assert stats["last_execution_at"].endswith("Z")
        empty = agent_with_workflow(user, [TRIGGER], [], name="idle")
        assert auth_client.get(f"/api/agents/{empty.id}/executions/stats").json()["success_rate"] is None

    def test_cancel_pending_then_409(self, user, auth_client, other_client):
        agent = agent_with_workflow(user, [TRIGGER], [])
        execution = execution_create(user=user, agent=agent, trigger="api", enqueue=False)
        path = f"/api/executions/{execution.id}/cancel"
        assert_envelope(other_client.post(path), 404, "NOT_FOUND")
        body = auth_client.post(path).json()
        assert body["status"] == "cancelled"
        assert_envelope(auth_client.post(path), 409, "CONFLICT")
        assert execute_execution(execution_id=execution.id) is None  # a cancelled run is never claimed

    def test_cancel_a_running_execution(self, user, auth_client):
        agent = agent_with_workflow(user, [TRIGGER, node("wait", "delay", seconds=30)], [edge("start", "wait")])
        execution = execution_create(user=user, agent=agent, trigger="api", enqueue=False)
        worker = threading.Thread(target=lambda: (execute_execution(execution_id=execution.id), connection.close()))
        worker.start()
        deadline = time.monotonic() + 5
        while Execution.objects.get(pk=execution.id).status != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert auth_client.post(f"/api/executions/{execution.id}/cancel").status_code == 200
        worker.join(timeout=10)
        execution.refresh_from_db()
        assert execution.status == "cancelled" and execution.duration_ms < 10_000
        assert {r["node_id"]: r["status"] for r in execution.node_results}["wait"] == "cancelled"

    def test_deleting_the_agent_cancels_its_executions(self, user, auth_client):
        agent = agent_with_workflow(user, [TRIGGER], [])
        execution = execution_create(user=user, agent=agent, trigger="api", enqueue=False)
        assert auth_client.delete(f"/api/agents/{agent.id}").status_code == 204
        execution.refresh_from_db()
        assert execution.status == "cancelled"
        assert auth_client.get(f"/api/executions/{execution.id}").status_code == 200  # history is kept


class TestRunners:
    def test_llm_node_json_is_parsed_and_validated(self, user, llm_server):
        create_model(create_provider(llm_server, "openai"), "test/model:latest")
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        nodes = [
            TRIGGER,
            node("ask", "llm", model="test/model:latest", prompt="number", response_format="json", json_schema=schema),
        ]
        llm_server.enqueue(Reply(text='```json\n{"n": 7}\n```'))
        done = run(user, nodes, [edge("start", "ask")])
        assert done.status == "completed" and done.output["json"] == {"n": 7}
        assert done.output["usage"] == {"prompt_tokens": 12, "completion_tokens": 5}
        llm_server.enqueue(Reply(text='{"n": "seven"}'))
        failed = run(user, nodes, [edge("start", "ask")])
        assert failed.status == "failed" and "json_schema" in failed.error

    def test_llm_node_runs_tools(self, user, llm_server):
        create_model(create_provider(llm_server, "openai"), "test/model:latest")
        llm_server.enqueue(Reply(tool_calls=[("calculate_math", {"expression": "3*3"})]), Reply(text="Nine."))
        nodes = [TRIGGER, node("ask", "llm", model="test/model:latest", prompt="3*3?", tools=["calculate_math"])]
        done = run(user, nodes, [edge("start", "ask")])
        assert done.output["text"] == "Nine."
        assert done.output["tool_calls"][0]["result"] == {"expression": "3*3", "result": 9}

    def test_http_request_node(self, user):
        received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                body = json.dumps({"ok": True, "echo": received[-1]}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        nodes = [TRIGGER, node("call", "http_request", method="POST", url=url, body={"name": "{{ input.name }}"})]
        try:
            with override_settings(OUTBOUND_ALLOW_PRIVATE_NETWORKS=True):
                done = run(user, nodes, [edge("start", "call")], input={"name": "Ada"})
            assert done.status == "completed", done.error
            assert done.output["status"] == 201 and done.output["json"] == {"ok": True, "echo": {"name": "Ada"}}
            refused = run(user, nodes, [edge("start", "call")], input={"name": "Bob"})
            assert refused.status == "failed" and "private" in refused.error.lower()
            assert received == [{"name": "Ada"}]
        finally:
            server.shutdown()

    def test_agent_node_runs_a_sub_agent_with_a_depth_limit(self, user):
        child = agent_with_workflow(
            user, [TRIGGER, node("o", "output", value="child got {{ input.q }}")], [edge("start", "o")], name="child"
        )
        parent_nodes = [
            TRIGGER,
            node("sub", "agent", agent_id=child.id, input={"q": "{{ input.q }}"}),
            node("o", "output", value="{{ prev }}"),
        ]
        done = run(user, parent_nodes, [edge("start", "sub"), edge("sub", "o")], input={"q": "why"})
        assert done.status == "completed" and done.output == "child got why"
        sub = Execution.objects.get(parent=done)
        assert sub.trigger == "agent" and sub.depth == 1 and sub.status == "completed"
        with override_settings(WORKFLOW_MAX_AGENT_DEPTH=0):
            limited = run(user, parent_nodes, [edge("start", "sub"), edge("sub", "o")])
        assert limited.status == "failed" and "deep" in limited.error

    def test_events_are_recorded_in_order(self, user):
        done = run(user, [TRIGGER, node("o", "output", value=1)], [edge("start", "o")])
        events = list(ExecutionEvent.objects.filter(execution=done).values_list("seq", "type"))
        assert events == [
            (1, "node_start"),
            (2, "node_complete"),
            (3, "node_start"),
            (4, "node_complete"),
            (5, "execution_complete"),
        ]


class TestRecovery:
    @override_settings(EXECUTION_STALE_SECONDS=1)
    def test_reaper_fails_a_run_whose_worker_died(self, user):
        agent = agent_with_workflow(user, [TRIGGER], [])
        execution = Execution.objects.create(
            user=user,
            agent_id=agent.id,
            trigger="api",
            status="running",
            started_at=timezone.now(),
            heartbeat_at=timezone.now() - timedelta(seconds=5),
        )
        assert executions_reap_stale()["failed"] == 1
        execution.refresh_from_db()
        assert execution.status == "failed" and "stopped responding" in execution.error

    @override_settings(EXECUTION_REQUEUE_SECONDS=1)
    def test_reaper_requeues_a_lost_pending_run(self, user):
        agent = agent_with_workflow(user, [TRIGGER], [])
        execution = execution_create(user=user, agent=agent, trigger="api", enqueue=False)
        Execution.objects.filter(pk=execution.pk).update(created_at=timezone.now() - timedelta(seconds=5))
        assert executions_reap_stale()["requeued"] == 1  # eager in tests: it runs right away
        execution.refresh_from_db()
        assert execution.status == "completed"

    @override_settings(EXECUTION_REQUEUE_SECONDS=60)
    def test_reaper_requeues_a_waiting_run_once_per_period(self, user):
        agent = agent_with_workflow(user, [TRIGGER], [])
        execution = execution_create(user=user, agent=agent, trigger="api", enqueue=False)
        Execution.objects.filter(pk=execution.pk).update(created_at=timezone.now() - timedelta(seconds=300))
        from claraverse.celery import app

        # Not eager: the re-enqueued message waits in the queue and the row stays pending, as in a backlog.
        app.conf.task_always_eager = False
        try:
            assert executions_reap_stale()["requeued"] == 1
            assert executions_reap_stale()["requeued"] == 0  # its message is still in the queue
            Execution.objects.filter(pk=execution.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=90))
            assert executions_reap_stale()["requeued"] == 1  # a period later: sent again
        finally:
            app.conf.task_always_eager = True

    def test_a_worker_killed_mid_execution_never_leaves_it_running(self, user, settings):
        agent = agent_with_workflow(user, [TRIGGER, node("wait", "delay", seconds=60)], [edge("start", "wait")])
        execution = execution_create(user=user, agent=agent, trigger="api", enqueue=False)
        script = (
            "import os, sys, django;"
            "os.environ['DJANGO_SETTINGS_MODULE'] = 'claraverse.settings.test';"
            "from django.conf import settings; settings.DATABASES['default']['NAME'] = sys.argv[1];"
            "django.setup();"
            "from executions.run import execute_execution; execute_execution(execution_id=sys.argv[2])"
        )
        worker = subprocess.Popen(
            [sys.executable, "-c", script, connection.settings_dict["NAME"], execution.id],
            cwd=PROJECT_ROOT,
            env={**os.environ, "EXECUTION_HEARTBEAT_SECONDS": "0.2"},
        )
        try:
            deadline = time.monotonic() + 20
            while Execution.objects.get(pk=execution.id).status != "running" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert Execution.objects.get(pk=execution.id).status == "running"
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=5)
        finally:
            if worker.poll() is None:
                worker.kill()
        settings.EXECUTION_STALE_SECONDS = 1
        time.sleep(1.2)
        assert executions_reap_stale()["failed"] == 1
        execution.refresh_from_db()
        assert execution.status == "failed" and execution.completed_at is not None

    def test_retention_prunes_old_finished_runs(self, user, settings):
        agent = agent_with_workflow(user, [TRIGGER], [])
        old = Execution.objects.create(user=user, agent_id=agent.id, trigger="api", status="completed")
        running = Execution.objects.create(user=user, agent_id=agent.id, trigger="api", status="running")
        Execution.objects.filter(pk__in=[old.pk, running.pk]).update(created_at=timezone.now() - timedelta(days=40))
        fresh = Execution.objects.create(user=user, agent_id=agent.id, trigger="api", status="completed")
        settings.EXECUTION_RETENTION_DAYS = 30
        executions_prune()
        assert set(Execution.objects.values_list("pk", flat=True)) == {running.pk, fresh.pk}
