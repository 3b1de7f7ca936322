"""Schedules: CRUD, cron and time-zone validation, DST, exactly-once firing, run now (CONTRACT §5)."""

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection
from django_celery_beat.models import PeriodicTask

from executions.models import Execution, Schedule
from executions.schedules import next_run_at, schedule_fire
from tests.executions.helpers import agent_with_workflow, edge, node
from tests.matrix import AccessCase, assert_access_matrix, assert_envelope

pytestmark = pytest.mark.django_db(transaction=True)

FLOW = (
    [node("start", "trigger", trigger_type="schedule"), node("out", "output", value="{{ input }}")],
    [edge("start", "out")],
)
SCHEDULE_FIELDS = {
    "id",
    "agent_id",
    "cron",
    "timezone",
    "enabled",
    "input",
    "next_run_at",
    "last_run_at",
    "created_at",
    "updated_at",
}


@pytest.fixture
def agent(user):
    return agent_with_workflow(user, *FLOW)


def create(client, agent_id, **body):
    return client.post(
        f"/api/agents/{agent_id}/schedule",
        {"cron": "0 9 * * *", "timezone": "America/New_York", "input": {"query": "daily news"}, **body},
        format="json",
    )


def test_create_get_update_delete(auth_client, agent):
    response = create(auth_client, agent.id)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == SCHEDULE_FIELDS and body["id"].startswith("sched_") and body["enabled"] is True
    assert body["next_run_at"].endswith("Z") and body["last_run_at"] is None
    task = PeriodicTask.objects.get(name=f"schedule:{body['id']}")
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == ("0", "9", "America/New_York")
    assert task.task == "executions.fire_schedule" and task.enabled
    assert_envelope(create(auth_client, agent.id), 409, "CONFLICT")
    assert auth_client.get(f"/api/agents/{agent.id}/schedule").json()["id"] == body["id"]

    updated = auth_client.put(
        f"/api/agents/{agent.id}/schedule", {"cron": "0 10 * * MON-FRI", "enabled": False}, format="json"
    ).json()
    assert updated["cron"] == "0 10 * * MON-FRI" and updated["enabled"] is False and updated["next_run_at"] is None
    assert updated["input"] == {"query": "daily news"}
    task.refresh_from_db()
    assert task.enabled is False and task.crontab.day_of_week == "1-5" and task.crontab.hour == "10"

    assert auth_client.delete(f"/api/agents/{agent.id}/schedule").status_code == 204
    assert not PeriodicTask.objects.filter(name=f"schedule:{body['id']}").exists()
    assert_envelope(auth_client.get(f"/api/agents/{agent.id}/schedule"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "body,field",
    [
        ({"cron": "0 9 * *"}, "cron"),
        ({"cron": "0 9 * * * *"}, "cron"),
        ({"cron": "61 9 * * *"}, "cron"),
        ({"cron": "@daily"}, "cron"),
        ({"cron": "0 9 * * FUNDAY"}, "cron"),
        ({"cron": "0 JAN * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"input": [1, 2]}, "input"),
        ({"enabled": "sometimes"}, "enabled"),
        ({"next_run_at": "2030-01-01T00:00:00Z"}, "next_run_at"),
    ],
)
def test_bad_fields_name_the_field(auth_client, agent, body, field):
    response = create(auth_client, agent.id, **body)
    assert field in assert_envelope(response, 400, "VALIDATION_ERROR")["details"]
    assert not Schedule.objects.exists()


def test_names_in_cron(auth_client, agent):
    body = create(auth_client, agent.id, cron="30 8 1 JAN,jul mon-fri", timezone="UTC").json()
    task = PeriodicTask.objects.get(name=f"schedule:{body['id']}")
    assert task.crontab.month_of_year == "1,7" and task.crontab.day_of_week == "1-5"


def test_next_run_follows_daylight_saving(user, agent):
    schedule = Schedule.objects.create(agent=agent, user=user, cron="0 9 * * *", timezone="America/New_York")
    before = next_run_at(schedule, after=datetime(2026, 10, 31, 14, 0, tzinfo=UTC))
    after = next_run_at(schedule, after=datetime(2026, 11, 2, 12, 0, tzinfo=UTC))
    # 09:00 New York is 13:00 UTC in summer time and 14:00 UTC after the clocks go back on 1 November 2026.
    assert before == datetime(2026, 11, 1, 14, 0, tzinfo=UTC)
    assert next_run_at(schedule, after=datetime(2026, 10, 30, 14, 0, tzinfo=UTC)) == datetime(
        2026, 10, 31, 13, 0, tzinfo=UTC
    )
    assert after == datetime(2026, 11, 2, 14, 0, tzinfo=UTC)


def test_each_firing_time_runs_once(user, agent):
    schedule = Schedule.objects.create(
        agent=agent, user=user, cron="* * * * *", timezone="Asia/Kolkata", input={"q": 1}
    )
    moment = datetime(2026, 11, 28, 10, 15, 30, tzinfo=UTC)
    first = schedule_fire(schedule_id=schedule.id, now=moment)
    assert first is not None and first.trigger == "schedule" and first.input == {"q": 1}
    assert schedule_fire(schedule_id=schedule.id, now=moment) is None  # a second beat or a redelivery
    assert schedule_fire(schedule_id=schedule.id, now=moment.replace(second=59)) is None  # same minute
    assert schedule_fire(schedule_id=schedule.id, now=moment.replace(minute=16)) is not None
    assert Execution.objects.filter(trigger="schedule").count() == 2
    assert Schedule.objects.get().last_run_at is not None


def test_concurrent_firings_give_one_execution(user, agent):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; the race needs a server database")
    schedule = Schedule.objects.create(agent=agent, user=user, cron="* * * * *")
    moment = datetime(2026, 11, 28, 10, 15, 30, tzinfo=UTC)
    results = []

    def fire():
        try:
            results.append(schedule_fire(schedule_id=schedule.id, now=moment))
        finally:
            connection.close()

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result is not None for result in results) == 1
    assert Execution.objects.filter(trigger="schedule").count() == 1


def test_disabled_schedule_never_fires(user, agent):
    schedule = Schedule.objects.create(agent=agent, user=user, cron="* * * * *", enabled=False)
    assert schedule_fire(schedule_id=schedule.id) is None
    assert not Execution.objects.exists()


def test_run_now_merges_input(auth_client, agent):
    create(auth_client, agent.id, input={"query": "daily news", "lang": "en"})
    response = auth_client.post(f"/api/agents/{agent.id}/schedule/run", {"input": {"query": "override"}}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending"
    execution = Execution.objects.get(pk=body["execution_id"])
    assert execution.trigger == "manual" and execution.input == {"query": "override", "lang": "en"}
    assert execution.status == "completed"  # eager in tests


def test_deleting_the_agent_removes_the_schedule(auth_client, agent):
    schedule_id = create(auth_client, agent.id).json()["id"]
    assert auth_client.delete(f"/api/agents/{agent.id}").status_code == 204
    assert not Schedule.objects.exists()
    assert not PeriodicTask.objects.filter(name=f"schedule:{schedule_id}").exists()
    assert schedule_fire(schedule_id=schedule_id) is None


def test_access_matrix(auth_client, other_client, agent):
    create(auth_client, agent.id)
    path = f"/api/agents/{agent.id}/schedule"
    assert_access_matrix(AccessCase("get", path), owner=auth_client, other=other_client)
    assert_access_matrix(
        AccessCase("put", path, body={"enabled": True}, bad_body={"cron": "nope"}),
        owner=auth_client,
        other=other_client,
    )
    assert_access_matrix(
        AccessCase("post", f"{path}/run", body={}, bad_body={"input": "text"}, owner_status=202),
        owner=auth_client,
        other=other_client,
    )
    assert_access_matrix(
        AccessCase("post", path, body={"cron": "0 9 * * *"}, bad_body={"cron": "x"}, owner_status=409),
        owner=auth_client,
        other=other_client,
    )
    assert_access_matrix(AccessCase("delete", path, owner_status=204), owner=auth_client, other=other_client)
