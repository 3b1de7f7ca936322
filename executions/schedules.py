"""Schedules (CONTRACT §5): cron in an IANA time zone, on django-celery-beat, each firing at most once."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from claraverse.errors import ApplicationError

from .models import Execution, ExecutionTrigger, Schedule, ScheduleFiring

FIRE_TASK = "executions.fire_schedule"
_MONTHS = {
    name: str(number)
    for number, name in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1
    )
}
_WEEKDAYS = {name: str(number) for number, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_NAME = re.compile(r"[A-Za-z]{3}")
_FIELD = re.compile(r"^[0-9A-Za-z*/,\-]+$")


def normalize_cron(cron: Any) -> str:
    """Five fields (minute hour day month weekday) with names like MON-FRI or JAN; numbers out, or a 400."""
    if not isinstance(cron, str):
        raise _cron_error("Must be a string of five fields.")
    fields = cron.split()
    if len(fields) != 5 or not all(_FIELD.match(field) for field in fields):
        raise _cron_error("Must have exactly five fields: minute hour day-of-month month day-of-week.")
    try:
        fields[3] = _NAME.sub(lambda match: _MONTHS[match.group().upper()], fields[3])
        fields[4] = _NAME.sub(lambda match: _WEEKDAYS[match.group().upper()], fields[4])
    except KeyError as exc:
        raise _cron_error(f"Unknown name {exc.args[0]!r}.") from None
    normalized = " ".join(fields)
    if _NAME.search(" ".join(fields[:3])) or not croniter.is_valid(normalized):
        raise _cron_error("Not a valid cron expression.")
    return normalized


def _cron_error(message: str) -> ApplicationError:
    return ApplicationError("VALIDATION_ERROR", f"cron: {message}", details={"cron": [message]})


@cache
def _zone_names() -> frozenset[str]:
    # Reading the zone database is slow; it does not change while the process runs.
    return frozenset(available_timezones())


def validate_timezone(name: Any) -> str:
    """An IANA time-zone name, or a 400 naming the field."""
    if isinstance(name, str) and name in _zone_names():
        try:
            ZoneInfo(name)
            return name
        except ZoneInfoNotFoundError:
            pass
    raise ApplicationError(
        "VALIDATION_ERROR",
        "timezone: Unknown IANA time zone.",
        details={"timezone": ["Unknown IANA time zone (e.g. Europe/Berlin)."]},
    )


def next_run_at(schedule: Schedule, *, after: datetime | None = None) -> datetime | None:
    """The next firing time (UTC) of an enabled schedule, following the zone's daylight-saving rules."""
    if not schedule.enabled:
        return None
    zone = ZoneInfo(schedule.timezone)
    start = (after or timezone.now()).astimezone(zone)
    return croniter(normalize_cron(schedule.cron), start).get_next(datetime).astimezone(UTC)


def _sync_periodic_task(schedule: Schedule) -> None:
    minute, hour, day_of_month, month_of_year, day_of_week = normalize_cron(schedule.cron).split()
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone=schedule.timezone,
    )
    task = schedule.periodic_task or PeriodicTask(name=f"schedule:{schedule.id}", task=FIRE_TASK)
    task.crontab = crontab
    task.kwargs = json.dumps({"schedule_id": schedule.id})
    task.enabled = schedule.enabled
    task.save()
    if schedule.periodic_task_id != task.pk:
        schedule.periodic_task = task
        schedule.save(update_fields=["periodic_task"])


def _validated_input(value: Any) -> dict:
    from .services import validate_execution_input

    return validate_execution_input(value)


@transaction.atomic
def schedule_create(
    *, agent, cron: Any, timezone_name: Any = "UTC", enabled: bool = True, input: Any = None
) -> Schedule:
    """Create the agent's schedule; a second one is a 409."""
    # Bad input is a 400 even when a schedule exists: the 409 is only for a valid second schedule.
    normalize_cron(cron)
    schedule = Schedule(
        agent=agent,
        user=agent.user,
        cron=" ".join(cron.split()),
        timezone=validate_timezone(timezone_name),
        enabled=enabled,
        input=_validated_input(input),
    )
    if Schedule.objects.filter(agent=agent).exists():
        raise ApplicationError("CONFLICT", "This agent already has a schedule; update it instead.")
    try:
        with transaction.atomic():
            schedule.save()
    except IntegrityError:
        raise ApplicationError("CONFLICT", "This agent already has a schedule; update it instead.") from None
    _sync_periodic_task(schedule)
    return schedule


@transaction.atomic
def schedule_update(*, schedule: Schedule, fields: dict[str, Any]) -> Schedule:
    """Change the fields given; the beat entry follows."""
    if "cron" in fields:
        normalize_cron(fields["cron"])
        schedule.cron = " ".join(fields["cron"].split())
    if "timezone" in fields:
        schedule.timezone = validate_timezone(fields["timezone"])
    if "enabled" in fields:
        schedule.enabled = fields["enabled"]
    if "input" in fields:
        schedule.input = _validated_input(fields["input"])
    schedule.save()
    _sync_periodic_task(schedule)
    return schedule


@transaction.atomic
def schedule_delete(*, schedule: Schedule) -> None:
    """Delete a schedule and its beat entry."""
    if schedule.periodic_task_id:
        PeriodicTask.objects.filter(pk=schedule.periodic_task_id).delete()
    schedule.delete()


def schedule_delete_for_agent(*, agent) -> None:
    """Remove an agent's schedule, if any (the agent is being deleted)."""
    schedule = Schedule.objects.filter(agent=agent).first()
    if schedule is not None:
        schedule_delete(schedule=schedule)


def schedule_run_now(*, schedule: Schedule, input: Any = None) -> Execution:
    """Start an execution now with the body's input merged over the schedule's (trigger `manual`)."""
    from .services import execution_create

    merged = {**schedule.input, **_validated_input(input)}
    return execution_create(user=schedule.user, agent=schedule.agent, trigger=ExecutionTrigger.MANUAL, input=merged)


def schedule_fire(*, schedule_id: str, now: datetime | None = None) -> Execution | None:
    """Run the firing due now, once: concurrent or redelivered calls for the same time find it claimed."""
    from .services import execution_create

    schedule = Schedule.objects.select_related("agent", "user").filter(pk=schedule_id).first()
    if schedule is None:
        # The schedule is gone (its agent deleted); a leftover beat entry must not keep firing.
        PeriodicTask.objects.filter(name=f"schedule:{schedule_id}").delete()
        return None
    if not schedule.enabled:
        return None
    zone = ZoneInfo(schedule.timezone)
    # The latest cron time not after now (plus a second, so that a call at hh:mm:00 counts that minute).
    moment = ((now or timezone.now()) + timedelta(seconds=1)).astimezone(zone)
    fire_time = croniter(normalize_cron(schedule.cron), moment).get_prev(datetime).astimezone(UTC)
    try:
        with transaction.atomic():
            firing = ScheduleFiring.objects.create(schedule=schedule, fire_time=fire_time)
            execution = execution_create(
                user=schedule.user, agent=schedule.agent, trigger=ExecutionTrigger.SCHEDULE, input=schedule.input
            )
            firing.execution = execution
            firing.save(update_fields=["execution"])
            Schedule.objects.filter(pk=schedule.pk).update(last_run_at=timezone.now())
    except IntegrityError:
        return None  # another process already ran this firing time
    return execution
