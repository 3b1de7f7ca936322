"""Issue 5's first "done when": a chat that asks to post to Slack calls send_slack with the user's stored
credential, the loopback receiver gets the message, and the webhook URL is never shown or stored in clear."""

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection

from accounts.services import tokens_issue
from claraverse.asgi import application
from tests.support.http_peer import Answer, HTTPPeer
from tests.support.llm_server import Reply, create_model, create_provider

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_async_db_connections")]


async def test_chat_posts_to_slack_with_the_stored_credential(llm_server, user, auth_client, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # the Slack stand-in listens on loopback
    await database_sync_to_async(lambda: create_model(create_provider(llm_server, "openai"), "chat/model"))()
    with HTTPPeer() as slack:
        slack.on("POST", "/services/T1/B1/xoxsecret", Answer(status=200, body="ok"))
        webhook_url = slack.url("/services/T1/B1/xoxsecret")
        created = await database_sync_to_async(auth_client.post)(
            "/api/credentials",
            {"integration_id": "slack", "name": "Team", "credentials": {"webhook_url": webhook_url}},
            format="json",
        )
        assert created.status_code == 201
        listed = await database_sync_to_async(auth_client.get)("/api/credentials")
        assert webhook_url not in json.dumps(listed.json()) and "xoxsecret" not in json.dumps(listed.json())

        llm_server.enqueue(
            Reply(tool_calls=[("send_slack", {"text": "Daily summary: all green"})]), Reply(text="Posted to Slack.")
        )
        token = await database_sync_to_async(lambda: tokens_issue(user=user).access_token)()
        communicator = WebsocketCommunicator(application, f"/ws/chat?token={token}")
        assert (await communicator.connect())[0]
        await communicator.send_json_to(
            {
                "type": "chat",
                "payload": {
                    "conversation_id": "c",
                    "message": "Post 'Daily summary: all green' to Slack",
                    "model": "chat/model",
                    "tools": ["send_slack"],
                },
            }
        )
        frames = []
        while not frames or not frames[-1]["payload"].get("done"):
            frames.append(await communicator.receive_json_from(timeout=10))
        await communicator.disconnect()

        assert frames[0]["type"] == "tool_call" and frames[0]["payload"]["tool"] == "send_slack"
        assert frames[1]["type"] == "tool_result" and frames[1]["payload"]["status"] == "completed"
        assert [r.json() for r in slack.requests] == [{"text": "Daily summary: all green"}]
        # The model never saw the webhook URL: it is not in any request sent to the provider.
        assert all("xoxsecret" not in json.dumps(r.body) for r in llm_server.chat_requests)

    def raw_rows():
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM integrations_credential")
            return str(cursor.fetchall())

    assert "xoxsecret" not in await database_sync_to_async(raw_rows)()
