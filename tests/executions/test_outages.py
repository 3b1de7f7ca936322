"""Executions around outages (found by `make faults`): a broker that is down, a database that went away, a reaper
that ended a run its worker was still carrying."""

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerDown
from rest_framework.test import APIClient

from executions import run as execution_run
from executions.events import EventRecorder
from executions.models import Execution, ExecutionEvent, ExecutionStatus, ExecutionTrigger
from executions.services import execution_create
from tests.executions.helpers import agent_with_workflow, edge, node

pytestmark = pytest.mark.django_db(transaction=True)

FLOW = (
    [node("start", "trigger", trigger_type="api"), node("out", "output", value="Hi {{ input.name }}")],
    [edge("start", "out")],
)


def broker_down(*args, **kwargs):
    raise BrokerDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def test_trigger_is_accepted_while_the_broker_is_down(user, auth_client, monkeypatch):
    """The row is committed and pending; the reaper enqueues it again. A 500 would make the caller retry."""
    from executions.tasks import run_execution

    monkeypatch.setattr(run_execution, "delay", broker_down)
    agent = agent_with_workflow(user, *FLOW)
    key = auth_client.post("/api/keys", {"name": "k", "scopes": ["trigger"]}, format="json").json()["key"]
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    response = client.post(f"/api/trigger/{agent.id}", {"input": {"name": "Bo"}}, format="json")
    assert response.status_code == 202, response.content
    assert Execution.objects.get(pk=response.json()["execution_id"]).status == ExecutionStatus.PENDING


def running_execution(user) -> Execution:
    agent = agent_with_workflow(user, *FLOW)
    execution = execution_create(user=user, agent=agent, trigger=ExecutionTrigger.API, enqueue=False)
    Execution.objects.filter(pk=execution.pk).update(status=ExecutionStatus.RUNNING, heartbeat_at=timezone.now())
    execution.refresh_from_db()
    return execution


def test_a_run_that_ends_after_the_reaper_ended_it_keeps_the_reapers_ending(user):
    execution = running_execution(user)
    Execution.objects.filter(pk=execution.pk).update(
        status=ExecutionStatus.FAILED, error="The worker running this execution stopped responding."
    )
    finished = execution_run._finish(
        execution,
        EventRecorder(execution.pk),
        status=ExecutionStatus.COMPLETED,
        output="late",
        error=None,
        duration_ms=5,
        node_results=[],
    )
    row = Execution.objects.get(pk=execution.pk)
    assert finished.status == row.status == ExecutionStatus.FAILED and row.output is None
    assert not ExecutionEvent.objects.filter(execution_id=execution.pk, type="execution_complete").exists()


def test_the_watch_stops_a_run_the_reaper_ended(user, settings):
    settings.EXECUTION_HEARTBEAT_SECONDS = 0
    execution = running_execution(user)
    watch = execution_run._Watch(execution.pk)
    assert watch() is False  # heartbeats, keeps running
    Execution.objects.filter(pk=execution.pk).update(status=ExecutionStatus.FAILED)
    assert watch() is True


def test_the_watch_rides_out_a_database_outage(user, settings, monkeypatch):
    settings.EXECUTION_HEARTBEAT_SECONDS = 0
    execution = running_execution(user)
    watch = execution_run._Watch(execution.pk)
    dropped = []

    def refuse(*args, **kwargs):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(Execution.objects, "filter", refuse)
    monkeypatch.setattr(execution_run, "_drop_connection", lambda: dropped.append(True))
    assert watch() is False and dropped  # no exception, the broken connection is let go
    monkeypatch.undo()
    before = Execution.objects.get(pk=execution.pk).heartbeat_at
    Execution.objects.filter(pk=execution.pk).update(heartbeat_at=before - timedelta(minutes=1))
    assert watch() is False
    assert Execution.objects.get(pk=execution.pk).heartbeat_at > before - timedelta(minutes=1)
