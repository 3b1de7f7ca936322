"""Webhook callbacks when something misbehaves around them (found by `make faults`): a receiver that drips its
answer, a broker that is down when the execution ends."""

import contextlib
import socket
import threading

import pytest
from django.test import override_settings
from kombu.exceptions import OperationalError as BrokerDown
from rest_framework.test import APIClient

from apikeys.models import WebhookDelivery
from executions.models import Execution, ExecutionStatus
from tests.executions.helpers import agent_with_workflow, edge, node

pytestmark = pytest.mark.django_db(transaction=True)

FLOW = (
    [node("start", "trigger", trigger_type="api"), node("out", "output", value="Hi {{ input.name }}")],
    [edge("start", "out")],
)


class DripReceiver:
    """Answers 200 with a declared body and then sends one byte every 0.1 s: no single read ever times out."""

    def __init__(self):
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        with contextlib.suppress(OSError):
            while not self.stopping.is_set():
                sock, _ = self.listener.accept()
                threading.Thread(target=self._drip, args=(sock,), daemon=True).start()

    def _drip(self, sock):
        with contextlib.suppress(OSError), sock:
            sock.recv(65536)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n")
            while not self.stopping.wait(0.1):
                sock.sendall(b".")

    def close(self):
        self.stopping.set()
        self.listener.close()


def trigger(user, auth_client, webhook_url: str):
    agent = agent_with_workflow(user, *FLOW)
    key = auth_client.post("/api/keys", {"name": "k", "scopes": ["trigger"]}, format="json").json()["key"]
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client.post(f"/api/trigger/{agent.id}", {"input": {"name": "Bo"}, "webhook_url": webhook_url}, format="json")


@override_settings(OUTBOUND_ALLOW_PRIVATE_NETWORKS=True, WEBHOOK_TIMEOUT_SECONDS=0.5, WEBHOOK_MAX_ATTEMPTS=1)
def test_a_dripping_receiver_is_cut_off_at_the_webhook_timeout(user, auth_client):
    receiver = DripReceiver()
    try:
        response = trigger(user, auth_client, receiver.url)  # eager: the run and its one attempt happen here
    finally:
        receiver.close()
    assert response.status_code == 202
    delivery = WebhookDelivery.objects.get(execution_id=response.json()["execution_id"])
    # The attempt's overall deadline is the setting, not connect + read timeouts (which said "within 1 s").
    assert "did not complete within 0.5 s" in delivery.error and delivery.status_code is None


@override_settings(OUTBOUND_ALLOW_PRIVATE_NETWORKS=True)
def test_a_broker_outage_when_the_execution_ends_does_not_fail_it(user, auth_client, monkeypatch):
    from apikeys.tasks import deliver_webhook

    def broker_down(*args, **kwargs):
        raise BrokerDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(deliver_webhook, "delay", broker_down)
    response = trigger(user, auth_client, "http://127.0.0.1:9/hook")
    assert response.status_code == 202
    execution = Execution.objects.get(pk=response.json()["execution_id"])
    assert execution.status == ExecutionStatus.COMPLETED and execution.output == "Hi Bo"


@override_settings(OUTBOUND_ALLOW_PRIVATE_NETWORKS=True, WEBHOOK_MAX_ATTEMPTS=1)
def test_a_callback_lost_to_a_broker_outage_is_sent_later(user, auth_client, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from apikeys.services import webhooks_requeue_lost
    from apikeys.tasks import deliver_webhook
    from tests.support.http_peer import HTTPPeer

    http_peer = HTTPPeer().on("POST", "/hook").start()

    original_delay = deliver_webhook.delay

    def broker_down(*args, **kwargs):
        raise BrokerDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(deliver_webhook, "delay", broker_down)
    response = trigger(user, auth_client, http_peer.url("/hook"))
    execution_id = response.json()["execution_id"]
    assert not WebhookDelivery.objects.filter(execution_id=execution_id).exists()
    monkeypatch.setattr(deliver_webhook, "delay", original_delay)  # the broker is back

    assert webhooks_requeue_lost() == 0  # just ended: its message may only be slow
    Execution.objects.filter(pk=execution_id).update(completed_at=timezone.now() - timedelta(minutes=3))
    assert webhooks_requeue_lost() == 1  # eager: the attempt runs here

    delivery = WebhookDelivery.objects.get(execution_id=execution_id)
    assert delivery.attempt == 1 and delivery.status_code == 200
    assert [request.path for request in http_peer.requests] == ["/hook"]
    assert webhooks_requeue_lost() == 0  # an attempt is recorded now: never sent twice
    http_peer.stop()
