"""Schedules: CRUD, cron and time-zone validation, DST, the dispatcher's exactly-once firing, run now (CONTRACT §5)."""

import threading
from datetime import UTC, datetime, timedelta
from importlib import import_module
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from accounts.models import DailyUsage, QuotaOverride
from agents.services import agent_delete
from claraverse.errors import ApplicationError
from claraverse.timeutils import isoformat_z
from executions.models import Execution, Schedule, ScheduleFiring
from executions.schedules import (
    MISFIRE_GRACE,
    next_run_at,
    schedule_create,
    schedule_update,
    schedules_dispatch_due,
)
from executions.services import execution_create
from executions.tasks import dispatch_due_schedules
from tests.executions.helpers import agent_with_workflow, edge, node
from tests.factories import UserFactory
from tests.matrix import AccessCase, assert_access_matrix, assert_envelope

pytestmark = pytest.mark.django_db(transaction=True)

FLOW = (
    [node("start", "trigger", trigger_type="schedule"), node("out", "output", value="{{ input }}")],
    [edge("start", "out")],
)
MINUTE = datetime(2026, 11, 28, 10, 15, tzinfo=UTC)


def at(hour, minute, second=0):
    """That time on MINUTE's day, in UTC."""
    return MINUTE.replace(hour=hour, minute=minute, second=second)


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
    schedule = Schedule.objects.get(pk=body["id"])
    # 09:00 in New York, stored in UTC: the dispatcher's next firing time.
    local = schedule.next_run_at.astimezone(ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (9, 0) and schedule.next_run_at > timezone.now()
    assert isoformat_z(schedule.next_run_at) == body["next_run_at"]
    assert not PeriodicTask.objects.filter(task__startswith="executions.fire").exists()  # no beat entry per schedule
    assert_envelope(create(auth_client, agent.id), 409, "CONFLICT")
    assert auth_client.get(f"/api/agents/{agent.id}/schedule").json()["id"] == body["id"]

    updated = auth_client.put(
        f"/api/agents/{agent.id}/schedule", {"cron": "0 10 * * MON-FRI", "enabled": False}, format="json"
    ).json()
    assert updated["cron"] == "0 10 * * MON-FRI" and updated["enabled"] is False and updated["next_run_at"] is None
    assert updated["input"] == {"query": "daily news"}
    assert Schedule.objects.get().next_run_at is None

    enabled = auth_client.put(f"/api/agents/{agent.id}/schedule", {"enabled": True}, format="json").json()
    next_run = datetime.fromisoformat(enabled["next_run_at"]).astimezone(ZoneInfo("America/New_York"))
    assert (next_run.hour, next_run.minute, next_run.isoweekday() <= 5) == (10, 0, True)

    assert auth_client.delete(f"/api/agents/{agent.id}/schedule").status_code == 204
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
    assert body["cron"] == "30 8 1 JAN,jul mon-fri"  # kept as written, understood as numbers
    next_run = datetime.fromisoformat(body["next_run_at"])
    assert (next_run.month in (1, 7), next_run.hour, next_run.minute) == (True, 8, 30)
    # Standard cron: a restricted day of month and day of week mean either one.
    assert next_run.day == 1 or next_run.isoweekday() <= 5


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


def scheduled(agent, *, cron="* * * * *", zone="UTC", next_run_at=MINUTE, **fields):
    """A schedule row whose next firing time is `next_run_at` (as the services would have stored it)."""
    return Schedule.objects.create(
        agent=agent, user=agent.user, cron=cron, timezone=zone, next_run_at=next_run_at, **fields
    )


def test_dispatch_fires_each_due_schedule_once(user, agent):
    schedule = scheduled(agent, zone="Asia/Kolkata", input={"q": 1})
    scheduled(agent_with_workflow(user, *FLOW, name="Noon"), cron="0 12 * * *", next_run_at=at(12, 0))
    counts = schedules_dispatch_due(now=MINUTE + timedelta(seconds=2))
    assert (counts["due"], counts["fired"]) == (1, 1)
    execution = Execution.objects.get()
    assert execution.trigger == "schedule" and execution.input == {"q": 1} and execution.agent_id == agent.id
    assert execution.status == "completed"  # enqueued after the commit (eager in tests)
    firing = ScheduleFiring.objects.get()
    assert firing.fire_time == MINUTE and firing.execution == execution
    schedule.refresh_from_db()
    assert schedule.next_run_at == MINUTE + timedelta(minutes=1)
    assert schedule.last_run_at == MINUTE + timedelta(seconds=2)
    # Another beat's dispatch, or a redelivered one, in the same minute finds nothing due.
    assert schedules_dispatch_due(now=MINUTE + timedelta(seconds=59))["due"] == 0
    assert schedules_dispatch_due(now=MINUTE + timedelta(minutes=1, seconds=1))["fired"] == 1
    assert sorted(ScheduleFiring.objects.values_list("fire_time", flat=True)) == [
        MINUTE,
        MINUTE + timedelta(minutes=1),
    ]
    assert Execution.objects.filter(trigger="schedule").count() == 2


def test_the_firing_claim_refuses_a_time_claimed_twice(user, agent):
    # What guards SQLite (no SKIP LOCKED) or a row edited meanwhile: the unique (schedule, fire_time).
    first = scheduled(agent)
    others = [scheduled(agent_with_workflow(user, *FLOW, name=f"Flow {index}")) for index in range(2)]
    ScheduleFiring.objects.create(schedule=first, fire_time=MINUTE)  # claimed by another dispatcher
    counts = schedules_dispatch_due(now=MINUTE + timedelta(seconds=1))
    assert (counts["due"], counts["fired"], counts["claimed_elsewhere"]) == (3, 2, 1)
    assert sorted(Execution.objects.values_list("agent_id", flat=True)) == sorted(o.agent_id for o in others)
    assert ScheduleFiring.objects.filter(fire_time=MINUTE).count() == 3
    assert set(Schedule.objects.values_list("next_run_at", flat=True)) == {MINUTE + timedelta(minutes=1)}


def test_concurrent_dispatchers_start_each_firing_once(user, agent):
    schedules = [scheduled(agent)] + [
        scheduled(agent_with_workflow(user, *FLOW, name=f"Flow {index}")) for index in range(9)
    ]
    results, errors = [], []

    def dispatch():
        try:
            results.append(schedules_dispatch_due(now=MINUTE + timedelta(seconds=1), batch_size=4))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(result["fired"] for result in results) == len(schedules)
    assert Execution.objects.filter(trigger="schedule").count() == len(schedules)
    assert ScheduleFiring.objects.filter(fire_time=MINUTE).count() == len(schedules)
    assert set(Execution.objects.values_list("agent_id", flat=True)) == {s.agent_id for s in schedules}


def test_deleting_the_agent_waits_for_a_dispatch_holding_its_schedule(user, agent):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; the race needs a server database")
    schedule = scheduled(agent)
    holding, release = threading.Event(), threading.Event()

    def dispatcher():
        try:
            with transaction.atomic():
                Schedule.objects.select_for_update().get(pk=schedule.pk)
                ScheduleFiring.objects.create(schedule=schedule, fire_time=MINUTE)
                holding.set()
                release.wait(5)
        finally:
            connection.close()

    thread = threading.Thread(target=dispatcher)
    thread.start()
    assert holding.wait(5)
    threading.Timer(0.3, release.set).start()
    agent_delete(agent=agent)  # waits for the row, then deletes the firing committed meanwhile too
    thread.join()
    assert not Schedule.objects.exists() and not ScheduleFiring.objects.exists()


def test_a_late_dispatch_claims_a_cron_time_not_now(user, agent):
    hourly = scheduled(agent, cron="0 * * * *", next_run_at=at(10, 0))
    minutely = scheduled(agent_with_workflow(user, *FLOW, name="Minutely"), next_run_at=at(10, 0))
    # 70 s late (a queue backlog, a restarted beat): past the next minute.
    schedules_dispatch_due(now=at(10, 1, 10))
    assert ScheduleFiring.objects.get(schedule=hourly).fire_time == at(10, 0)
    # Two minutes passed: one run, for the latest of them (10:01), never one per missed minute.
    assert ScheduleFiring.objects.get(schedule=minutely).fire_time == at(10, 1)
    hourly.refresh_from_db()
    minutely.refresh_from_db()
    assert (hourly.next_run_at, minutely.next_run_at) == (at(11, 0), at(10, 2))
    # The dispatch due at 10:01 on time finds 10:01 done; 10:02 fires as usual.
    assert schedules_dispatch_due(now=at(10, 1, 15))["due"] == 0
    schedules_dispatch_due(now=at(10, 2, 1))
    assert list(ScheduleFiring.objects.filter(schedule=minutely).values_list("fire_time", flat=True)) == [
        at(10, 1),
        at(10, 2),
    ]
    assert Execution.objects.filter(trigger="schedule").count() == 3


def test_a_firing_missed_by_more_than_the_grace_is_skipped(user, agent):
    assert timedelta(hours=1) == MISFIRE_GRACE
    daily = scheduled(agent, cron="0 9 * * *", next_run_at=datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    hourly = scheduled(agent_with_workflow(user, *FLOW, name="Hourly"), cron="0 * * * *", next_run_at=at(7, 0))
    # Down from before yesterday's 09:00 until 10:30: 09:00 today is 90 minutes old, 10:00 half an hour.
    counts = schedules_dispatch_due(now=at(10, 30))
    assert (counts["due"], counts["missed"], counts["fired"]) == (2, 1, 1)
    assert not ScheduleFiring.objects.filter(schedule=daily).exists()
    assert list(ScheduleFiring.objects.values_list("fire_time", flat=True)) == [at(10, 0)]
    daily.refresh_from_db()
    hourly.refresh_from_db()
    assert daily.next_run_at == datetime(2026, 11, 29, 9, 0, tzinfo=UTC) and daily.last_run_at is None
    assert hourly.next_run_at == at(11, 0)


def test_dispatch_stores_each_schedules_own_next_run(user, agent):
    # Twelve crons due at 10:15 whose next times all differ (more than the grouped UPDATEs take).
    crons = {f"15,{minute} 10 * * *": at(10, minute) for minute in range(16, 28)}
    for index, cron in enumerate(crons):
        scheduled(agent if index == 0 else agent_with_workflow(user, *FLOW, name=f"Flow {index}"), cron=cron)
    assert schedules_dispatch_due(now=MINUTE + timedelta(seconds=1))["fired"] == len(crons)
    assert {s.cron: s.next_run_at for s in Schedule.objects.all()} == crons
    assert set(Schedule.objects.values_list("last_run_at", flat=True)) == {MINUTE + timedelta(seconds=1)}


def test_dispatch_advances_next_run_across_daylight_saving(agent):
    # 09:00 New York is 13:00 UTC in summer time and 14:00 UTC after the clocks go back on 1 November 2026.
    schedule = scheduled(
        agent, cron="0 9 * * *", zone="America/New_York", next_run_at=datetime(2026, 10, 31, 13, 0, tzinfo=UTC)
    )
    schedules_dispatch_due(now=datetime(2026, 10, 31, 13, 0, 3, tzinfo=UTC))
    schedule.refresh_from_db()
    assert schedule.next_run_at == datetime(2026, 11, 1, 14, 0, tzinfo=UTC)
    assert schedules_dispatch_due(now=datetime(2026, 11, 1, 13, 0, 3, tzinfo=UTC))["due"] == 0
    schedules_dispatch_due(now=datetime(2026, 11, 1, 14, 0, 3, tzinfo=UTC))
    schedule.refresh_from_db()
    assert schedule.next_run_at == datetime(2026, 11, 2, 14, 0, tzinfo=UTC)
    assert list(ScheduleFiring.objects.order_by("fire_time").values_list("fire_time", flat=True)) == [
        datetime(2026, 10, 31, 13, 0, tzinfo=UTC),
        datetime(2026, 11, 1, 14, 0, tzinfo=UTC),
    ]


def test_disabled_schedules_never_fire(agent):
    schedule = schedule_create(agent=agent, cron="* * * * *", enabled=False)
    assert schedule.next_run_at is None
    # Even a disabled row left with a firing time (written by hand) is not due.
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=MINUTE)
    assert schedules_dispatch_due(now=MINUTE + timedelta(seconds=1))["due"] == 0
    assert not Execution.objects.exists() and not ScheduleFiring.objects.exists()
    schedule.refresh_from_db()
    enabled = schedule_update(schedule=schedule, fields={"enabled": True})
    assert enabled.next_run_at > timezone.now()


def test_an_input_edit_keeps_a_due_firing(agent):
    schedule = schedule_create(agent=agent, cron="* * * * *")
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=MINUTE)  # due, not dispatched yet
    schedule.refresh_from_db()
    schedule = schedule_update(schedule=schedule, fields={"input": {"x": 1}, "enabled": True})
    assert Schedule.objects.get().next_run_at == MINUTE
    schedule = schedule_update(schedule=schedule, fields={"cron": "0 * * * *"})
    stored = Schedule.objects.get().next_run_at
    assert stored > timezone.now() and (stored.minute, stored.second) == (0, 0)


def test_quota_refusal_starts_nothing(user, agent, other_user):
    QuotaOverride.objects.create(user=user, executions_per_day=2)
    mine = [scheduled(agent)] + [scheduled(agent_with_workflow(user, *FLOW, name=f"Flow {i}")) for i in range(2)]
    theirs = scheduled(agent_with_workflow(other_user, *FLOW, name="Theirs"))
    counts = schedules_dispatch_due(now=MINUTE + timedelta(seconds=1))
    assert (counts["fired"], counts["over_quota"]) == (3, 1)
    assert Execution.objects.filter(user=user).count() == 2 and Execution.objects.filter(user=other_user).count() == 1
    assert DailyUsage.objects.get(user=user).executions == 2
    # As before: the refused firing leaves no execution, no firing record and no last run; the next minute is next.
    refused = [s for s in mine if not ScheduleFiring.objects.filter(schedule=s).exists()]
    assert len(refused) == 1 and ScheduleFiring.objects.filter(schedule=theirs).exists()
    refused[0].refresh_from_db()
    assert refused[0].last_run_at is None and refused[0].next_run_at == MINUTE + timedelta(minutes=1)
    with pytest.raises(ApplicationError) as refusal:
        execution_create(user=user, agent=agent, trigger="manual")
    assert refusal.value.code == "QUOTA_EXCEEDED"


def test_dispatching_50_schedules_takes_a_few_queries(user, other_user, django_assert_max_num_queries, monkeypatch):
    owners = [user, other_user, UserFactory()]
    for index in range(50):
        scheduled(agent_with_workflow(owners[index % 3], *FLOW, name=f"Flow {index}"), input={"i": index})
    enqueued = []
    monkeypatch.setattr(
        "executions.services.executions_enqueue_many", lambda *, execution_ids: enqueued.extend(execution_ids)
    )
    with django_assert_max_num_queries(22):
        counts = schedules_dispatch_due(now=MINUTE + timedelta(seconds=1))
    assert counts["fired"] == 50 and len(set(enqueued)) == 50
    assert Execution.objects.filter(pk__in=enqueued, status="pending").count() == 50
    with django_assert_max_num_queries(3):
        assert schedules_dispatch_due(now=MINUTE + timedelta(seconds=2))["due"] == 0


def test_beat_runs_the_dispatcher(agent, monkeypatch):
    wake_ups = []  # the next minute may come before the next tick (tested below)
    monkeypatch.setattr(dispatch_due_schedules, "apply_async", lambda **options: wake_ups.append(options))
    entry = settings.CELERY_BEAT_SCHEDULE["dispatch-due-schedules"]
    assert entry == {
        "task": "executions.dispatch_due_schedules",
        "schedule": settings.SCHEDULE_DISPATCH_INTERVAL_SECONDS,
    }
    scheduled(agent, next_run_at=timezone.now() - timedelta(seconds=3))
    dispatch_due_schedules.apply()  # as a worker runs it
    assert Execution.objects.get().trigger == "schedule"


def test_a_firing_due_before_the_next_tick_gets_a_wake_up(user, agent, monkeypatch):
    sent = []
    monkeypatch.setattr(dispatch_due_schedules, "apply_async", lambda **options: sent.append(options))
    soon = timezone.now() + timedelta(seconds=2)
    scheduled(agent, next_run_at=soon)
    dispatch_due_schedules()  # beat's tick: nothing due yet, but before the next tick
    assert sent == [{"kwargs": {"wake_at": soon.isoformat()}, "eta": soon}]
    Schedule.objects.update(next_run_at=timezone.now() + timedelta(minutes=1))
    dispatch_due_schedules()
    assert len(sent) == 1  # the next tick comes first

    # The wake-up waits for its time if the timer fired early, dispatches, and sends no further wake-up.
    Schedule.objects.update(next_run_at=timezone.now() - timedelta(seconds=1))
    scheduled(agent_with_workflow(user, *FLOW, name="Soon"), next_run_at=timezone.now() + timedelta(seconds=2))
    wake_at = timezone.now() + timedelta(seconds=0.3)
    assert dispatch_due_schedules(wake_at=wake_at.isoformat())["fired"] == 1
    assert Execution.objects.get().started_at >= wake_at and len(sent) == 1


def test_migration_moves_schedules_off_beat(user, agent):
    migration = import_module("executions.migrations.0005_schedules_leave_beat")
    crontab = CrontabSchedule.objects.create(minute="0", hour="9", timezone="America/New_York")
    PeriodicTask.objects.create(name="schedule:sched_old", task="executions.fire_schedule", crontab=crontab)
    every_hour = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    PeriodicTask.objects.create(name="prune", task="accounts.prune_expired_tokens", interval=every_hour)
    enabled = scheduled(agent, cron="0 9 * * *", zone="America/New_York", next_run_at=None)
    disabled = scheduled(agent_with_workflow(user, *FLOW, name="Off"), enabled=False, next_run_at=None)
    migration.forward(django_apps, None)
    assert list(PeriodicTask.objects.values_list("task", flat=True)) == ["accounts.prune_expired_tokens"]
    assert not CrontabSchedule.objects.filter(pk=crontab.pk).exists()
    enabled.refresh_from_db()
    disabled.refresh_from_db()
    assert enabled.next_run_at == next_run_at(enabled) and disabled.next_run_at is None


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
    assert not Schedule.objects.filter(pk=schedule_id).exists()
    assert schedules_dispatch_due(now=timezone.now() + timedelta(days=2))["due"] == 0
    assert not Execution.objects.filter(trigger="schedule").exists()


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
