"""User A's resources, made through the API, for the sweeps that attack them."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from accounts.services import tokens_issue
from apikeys.models import WebhookDelivery
from executions.models import Execution
from tests.executions.helpers import edge, node

# A refused (loopback) address: a credential test the sweeps set off fails at once, without leaving the machine.
CREDENTIAL_URL = "https://127.0.0.1:9/services/T0/B0/a-secret-part"

# Text only A ever wrote: none of it may appear in any answer to B.
SECRETS = {
    "agent": "A-agent-name-7c1f",
    "description": "A-agent-description-0b9e",
    "schedule_input": "A-schedule-input-5d2a",
    "memory": "A-memory-content-8e4b",
    "credential": "A-credential-name-3f6c",
    "key": "A-key-name-1a7d",
    "chat": "A-chat-title-9c3e",
    "delivery": "A-delivery-error-2b8f",
    "file": b"A-file-content-6e1a\n",
}
A_CHAT_ID = "chat_a_private_conversation"
FLOW = {"nodes": [node("start", "trigger", trigger_type="manual"), node("out", "output", value="hi")]}
FLOW["edges"] = [edge("start", "out")]


def _created(response, status=201) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    return response.json()


def create_owned(client: APIClient, user) -> dict[str, str]:
    """One of each of `user`'s resources, made through the API; the ids fill the routes' parameters."""
    agent = _created(
        client.post("/api/agents", {"name": SECRETS["agent"], "description": SECRETS["description"]}, format="json")
    )
    _created(client.put(f"/api/agents/{agent['id']}/workflow", FLOW, format="json"), 200)
    schedule_body = {"cron": "0 9 * * *", "input": {"note": SECRETS["schedule_input"]}}
    _created(client.post(f"/api/agents/{agent['id']}/schedule", schedule_body, format="json"))
    run = _created(client.post(f"/api/agents/{agent['id']}/schedule/run", {}, format="json"), 202)
    execution = Execution.objects.get(pk=run["execution_id"])
    WebhookDelivery.objects.create(execution=execution, attempt=1, status_code=500, error=SECRETS["delivery"])
    memory = _created(client.post("/api/memories", {"content": SECRETS["memory"]}, format="json"))
    credential = _created(
        client.post(
            "/api/credentials",
            {
                "integration_id": "slack",
                "name": SECRETS["credential"],
                "credentials": {"webhook_url": CREDENTIAL_URL},
            },
            format="json",
        )
    )
    key = _created(client.post("/api/keys", {"name": SECRETS["key"], "scopes": ["trigger", "upload"]}, format="json"))
    upload = _created(
        client.post("/api/upload", {"file": SimpleUploadedFile("notes.txt", SECRETS["file"])}, format="multipart")
    )
    chat_body = {"id": A_CHAT_ID, "title": SECRETS["chat"], "messages": [{"role": "user", "content": SECRETS["chat"]}]}
    _created(client.post("/api/chats", chat_body, format="json"))
    return {
        "agent_id": agent["id"],
        "version": "1",
        "execution_id": execution.id,
        "memory_id": memory["id"],
        "credential_id": credential["id"],
        "key_id": key["id"],
        "raw_key": key["key"],
        "file_id": upload["id"],
        "name": upload["url"].rsplit("/", 1)[1],
        "chat_id": A_CHAT_ID,
        "refresh_token": tokens_issue(user=user).refresh_token,
    }
