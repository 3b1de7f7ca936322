"""API keys, external triggers with idempotency, signed webhook callbacks with retries (CONTRACT §6)."""

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from apikeys.models import ApiKey
from executions.models import Execution
from tests.executions.helpers import agent_with_workflow, edge, node
from tests.matrix import AccessCase, assert_access_matrix, assert_envelope

pytestmark = pytest.mark.django_db(transaction=True)

FLOW = (
    [node("start", "trigger", trigger_type="api"), node("out", "output", value="Hi {{ input.name }}")],
    [edge("start", "out")],
)


class Receiver:
    """A loopback webhook receiver answering scripted statuses and recording what it got."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.received: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.server.shutdown()


def create_key(client, **body):
    response = client.post(
        "/api/keys", {"name": "Production Key", "scopes": ["trigger", "upload"], **body}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


def verify(signature_header: str, body: bytes, secret: str) -> bool:
    """The README's recipe for receivers."""
    parts = dict(item.split("=", 1) for item in signature_header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


class TestKeys:
    def test_create_shows_the_key_once_and_stores_only_a_hash(self, auth_client):
        body = create_key(auth_client, expires_at="2099-01-01T00:00:00Z")
        assert body["key"].startswith("cv_live_") and len(body["key"]) >= len("cv_live_") + 32
        assert body["webhook_secret"].startswith("whsec_") and body["id"].startswith("key_")
        assert body["scopes"] == ["trigger", "upload"] and body["expires_at"] == "2099-01-01T00:00:00Z"
        assert body["key"].startswith(body["prefix"])
        listed = auth_client.get("/api/keys").json()
        assert listed["total"] == 1 and body["key"] not in json.dumps(listed)
        assert set(listed["keys"][0]) == {
            "id",
            "name",
            "prefix",
            "scopes",
            "agent_ids",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        }
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM apikeys_apikey")
            row = str(cursor.fetchall())
        assert body["key"] not in row and body["webhook_secret"] not in row
        assert hashlib.sha256(body["key"].encode()).hexdigest() in row

    @pytest.mark.parametrize(
        "payload,field",
        [
            ({"scopes": ["admin"]}, "scopes"),
            ({"scopes": []}, "scopes"),
            ({"name": ""}, "name"),
            ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ],
    )
    def test_validation(self, auth_client, payload, field):
        response = auth_client.post("/api/keys", {"name": "k", "scopes": ["trigger"], **payload}, format="json")
        assert field in assert_envelope(response, 400, "VALIDATION_ERROR")["details"]

    def test_revoke_and_delete_matrix(self, auth_client, other_client):
        key_id = create_key(auth_client)["id"]
        assert_access_matrix(AccessCase("post", f"/api/keys/{key_id}/revoke"), owner=auth_client, other=other_client)
        assert ApiKey.objects.get().revoked_at is not None
        assert_access_matrix(
            AccessCase("delete", f"/api/keys/{key_id}", owner_status=204), owner=auth_client, other=other_client
        )
        assert_envelope(APIClient().get("/api/keys"), 401, "UNAUTHORIZED")


class TestTrigger:
    def test_trigger_runs_and_status_reports(self, user, auth_client):
        agent = agent_with_workflow(user, *FLOW)
        key = create_key(auth_client)
        response = key_client(key["key"]).post(f"/api/trigger/{agent.id}", {"input": {"name": "Ada"}}, format="json")
        assert response.status_code == 202
        body = response.json()
        assert body["status"] == "pending" and body["message"] == "Execution started"
        execution = Execution.objects.get(pk=body["execution_id"])
        assert execution.trigger == "api" and execution.status == "completed" and execution.output == "Hi Ada"
        status = key_client(key["key"]).get(f"/api/trigger/status/{execution.id}").json()
        assert status == {
            "execution_id": execution.id,
            "status": "completed",
            "output": "Hi Ada",
            "error": None,
            "started_at": status["started_at"],
            "completed_at": status["completed_at"],
            "duration_ms": execution.duration_ms,
        }
        assert ApiKey.objects.get().last_used_at is not None

    def test_key_rules(self, user, other_user, auth_client):
        agent = agent_with_workflow(user, *FLOW)
        theirs = agent_with_workflow(other_user, *FLOW)
        upload_only = create_key(auth_client, scopes=["upload"])["key"]
        assert_envelope(key_client(upload_only).post(f"/api/trigger/{agent.id}", {}, format="json"), 403, "FORBIDDEN")
        limited = create_key(auth_client, scopes=["trigger"], agent_ids=["agent_other"])["key"]
        assert_envelope(key_client(limited).post(f"/api/trigger/{agent.id}", {}, format="json"), 403, "FORBIDDEN")
        good = create_key(auth_client, scopes=["trigger"])
        assert_envelope(key_client(good["key"]).post(f"/api/trigger/{theirs.id}", {}, format="json"), 404, "NOT_FOUND")
        assert_envelope(
            key_client("cv_live_unknown").post(f"/api/trigger/{agent.id}", {}, format="json"), 401, "UNAUTHORIZED"
        )
        assert_envelope(APIClient().post(f"/api/trigger/{agent.id}", {}, format="json"), 401, "UNAUTHORIZED")
        auth_client.post(f"/api/keys/{good['id']}/revoke")
        assert_envelope(
            key_client(good["key"]).post(f"/api/trigger/{agent.id}", {}, format="json"), 401, "UNAUTHORIZED"
        )
        expiring = create_key(auth_client, scopes=["trigger"])
        ApiKey.objects.filter(pk=expiring["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert_envelope(
            key_client(expiring["key"]).post(f"/api/trigger/{agent.id}", {}, format="json"), 401, "UNAUTHORIZED"
        )
        assert Execution.objects.count() == 0
        # A JWT is not an API key.
        assert_envelope(auth_client.post(f"/api/trigger/{agent.id}", {}, format="json"), 401, "UNAUTHORIZED")

    def test_bad_body(self, user, auth_client):
        agent = agent_with_workflow(user, *FLOW)
        client = key_client(create_key(auth_client)["key"])
        assert_envelope(client.post(f"/api/trigger/{agent.id}", {"input": [1]}, format="json"), 400, "VALIDATION_ERROR")
        assert_envelope(
            client.post(f"/api/trigger/{agent.id}", {"webhook_url": "ftp://x"}, format="json"), 400, "VALIDATION_ERROR"
        )

    def test_idempotency_key_gives_one_execution(self, user, auth_client):
        agent = agent_with_workflow(user, *FLOW)
        client = key_client(create_key(auth_client)["key"])
        first = client.post(f"/api/trigger/{agent.id}", {"input": {}}, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
        again = client.post(f"/api/trigger/{agent.id}", {"input": {}}, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
        assert first.status_code == again.status_code == 202 and first.json() == again.json()
        other = client.post(f"/api/trigger/{agent.id}", {"input": {}}, format="json", HTTP_IDEMPOTENCY_KEY="abc-2")
        assert other.json()["execution_id"] != first.json()["execution_id"]
        assert Execution.objects.count() == 2

    def test_status_of_someone_elses_execution_is_404(self, user, other_user, auth_client):
        theirs = Execution.objects.create(user=other_user, agent_id="agent_x", trigger="api")
        client = key_client(create_key(auth_client)["key"])
        assert_envelope(client.get(f"/api/trigger/status/{theirs.id}"), 404, "NOT_FOUND")


class TestWebhooks:
    @pytest.fixture(autouse=True)
    def _loopback_receivers_allowed(self, settings):
        settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True

    def test_signed_callback_retried_until_delivered(self, user, auth_client):
        receiver = Receiver([500, 500, 200])
        try:
            agent = agent_with_workflow(user, *FLOW)
            key = create_key(auth_client)
            response = key_client(key["key"]).post(
                f"/api/trigger/{agent.id}", {"input": {"name": "Bo"}, "webhook_url": receiver.url}, format="json"
            )
            execution_id = response.json()["execution_id"]
            assert len(receiver.received) == 3
            headers, body = receiver.received[-1]
            assert verify(headers["x-claraverse-signature"], body, key["webhook_secret"])
            assert not verify(headers["x-claraverse-signature"], body + b" ", key["webhook_secret"])
            payload = json.loads(body)
            assert payload["event"] == "execution.completed"
            assert payload["execution"]["id"] == execution_id and payload["execution"]["output"] == "Hi Bo"
            detail = auth_client.get(f"/api/executions/{execution_id}").json()
            assert [(d["attempt"], d["status_code"]) for d in detail["webhook_deliveries"]] == [
                (1, 500),
                (2, 500),
                (3, 200),
            ]
            assert detail["webhook_deliveries"][0]["error"] and detail["webhook_deliveries"][2]["error"] is None
        finally:
            receiver.close()

    @override_settings(WEBHOOK_MAX_ATTEMPTS=3)
    def test_gives_up_after_the_last_attempt_and_reports_failures(self, user, auth_client):
        receiver = Receiver([500] * 10)
        try:
            agent = agent_with_workflow(
                user,
                [
                    node("start", "trigger", trigger_type="api"),
                    node("bad", "tool", tool="calculate_math", arguments={"expression": "1/0"}),
                ],
                [edge("start", "bad")],
            )
            key = create_key(auth_client)
            response = key_client(key["key"]).post(
                f"/api/trigger/{agent.id}", {"webhook_url": receiver.url}, format="json"
            )
            assert len(receiver.received) == 3
            assert json.loads(receiver.received[0][1])["event"] == "execution.failed"
            deliveries = auth_client.get(f"/api/executions/{response.json()['execution_id']}").json()
            assert len(deliveries["webhook_deliveries"]) == 3
        finally:
            receiver.close()

    def test_private_receiver_refused_without_the_switch(self, user, auth_client):
        receiver = Receiver([200])
        try:
            agent = agent_with_workflow(user, *FLOW)
            key = create_key(auth_client)
            with override_settings(OUTBOUND_ALLOW_PRIVATE_NETWORKS=False, WEBHOOK_MAX_ATTEMPTS=1):
                response = key_client(key["key"]).post(
                    f"/api/trigger/{agent.id}", {"webhook_url": receiver.url}, format="json"
                )
            assert receiver.received == []
            detail = auth_client.get(f"/api/executions/{response.json()['execution_id']}").json()
            assert "private" in detail["webhook_deliveries"][0]["error"].lower()
        finally:
            receiver.close()
