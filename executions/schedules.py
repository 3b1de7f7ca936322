"""Schedules (CONTRACT §5): cron in an IANA time zone, fired by one dispatcher, each firing time at most once.

Every schedule keeps its next cron time in `Schedule.next_run_at` (UTC). One static beat entry runs
`schedules_dispatch_due` every SCHEDULE_DISPATCH_INTERVAL_SECONDS: it takes every schedule due by
then, in batches, claims each firing time in `ScheduleFiring` (unique per schedule and time), starts
the executions and moves `next_run_at` past now. Its cost grows with the schedules due, not with
the schedules that exist, and a handful of queries serve a whole batch. A firing due before the
next tick gets a wake-up (see `executions.tasks.dispatch_due_schedules`), so it starts on time.

Missed firings: a dispatch runs each due schedule once, for its latest cron time not after now
(however many passed since `next_run_at`), and skips it when that is older than MISFIRE_GRACE.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter
from django.db import IntegrityError, connection, transaction
from django.db.models import Min
from django.utils import timezone

from claraverse.errors import ApplicationError

from .models import Execution, ExecutionTrigger, Schedule, ScheduleFiring

logger = logging.getLogger("claraverse.executions")

# A cron time missed by more than this (beat or the workers were down) is skipped, not run late.
MISFIRE_GRACE = timedelta(hours=1)
# Schedules claimed per dispatch transaction; the dispatcher repeats until none is due.
DISPATCH_BATCH_SIZE = 1000
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


@lru_cache(maxsize=4096)
def _stored_cron_expression(cron: str) -> str:
    # A dispatch evaluates every due schedule's saved cron (already validated); most share a few, so
    # each distinct one is normalized once, not once per schedule and batch.
    return normalize_cron(cron)


def _fire_times(cron: str, zone_name: str, now: datetime) -> tuple[datetime, datetime]:
    """(the latest cron time not after `now`, the first one after it), in UTC, by the zone's daylight-saving rules."""
    local = now.astimezone(ZoneInfo(zone_name))
    expression = _stored_cron_expression(cron)
    # croniter's get_prev is strictly before its start: a microsecond later counts a cron time equal to now.
    latest = croniter(expression, local + timedelta(microseconds=1)).get_prev(datetime)
    following = croniter(expression, local).get_next(datetime)
    return latest.astimezone(UTC), following.astimezone(UTC)


def next_run_at(schedule: Schedule, *, after: datetime | None = None) -> datetime | None:
    """The next firing time (UTC) of an enabled schedule after `after` (default now), following the zone's DST."""
    if not schedule.enabled:
        return None
    return _fire_times(schedule.cron, schedule.timezone, after or timezone.now())[1]


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
    schedule.next_run_at = next_run_at(schedule)
    if Schedule.objects.filter(agent=agent).exists():
        raise ApplicationError("CONFLICT", "This agent already has a schedule; update it instead.")
    try:
        with transaction.atomic():
            schedule.save()
    except IntegrityError:
        raise ApplicationError("CONFLICT", "This agent already has a schedule; update it instead.") from None
    return schedule


@transaction.atomic
def schedule_update(*, schedule: Schedule, fields: dict[str, Any]) -> Schedule:
    """Change the fields given; a new cron, time zone or enabled state recomputes `next_run_at` from now."""
    changed = ["updated_at"]
    timing = (schedule.cron, schedule.timezone, schedule.enabled)
    if "cron" in fields:
        normalize_cron(fields["cron"])
        changed.append("cron")
        schedule.cron = " ".join(fields["cron"].split())
    if "timezone" in fields:
        changed.append("timezone")
        schedule.timezone = validate_timezone(fields["timezone"])
    if "enabled" in fields:
        changed.append("enabled")
        schedule.enabled = fields["enabled"]
    if "input" in fields:
        changed.append("input")
        schedule.input = _validated_input(fields["input"])
    if (schedule.cron, schedule.timezone, schedule.enabled) != timing or (
        schedule.enabled and not schedule.next_run_at
    ):
        # Only then: an edit of the input alone must not skip a firing that is due but not yet dispatched.
        changed.append("next_run_at")
        schedule.next_run_at = next_run_at(schedule)
    # Only the edited columns: the dispatcher may be advancing next_run_at and last_run_at meanwhile.
    schedule.save(update_fields=changed)
    return schedule


@transaction.atomic
def schedule_delete(*, schedule: Schedule) -> None:
    """Delete a schedule (its firing records go with it)."""
    _delete_locked(Schedule.objects.filter(pk=schedule.pk))


@transaction.atomic
def schedule_delete_for_agent(*, agent) -> None:
    """Remove an agent's schedule, if any (the agent is being deleted)."""
    _delete_locked(Schedule.objects.filter(agent=agent))


def _delete_locked(schedules) -> None:
    # Locked first: a dispatcher holding the row commits before the delete collects the firing
    # records, so the one it just added goes too (else it would break the foreign key at commit).
    for schedule in schedules.select_for_update():
        schedule.delete()


def schedule_run_now(*, schedule: Schedule, input: Any = None) -> Execution:
    """Start an execution now with the body's input merged over the schedule's (trigger `manual`)."""
    from .services import execution_create

    merged = {**schedule.input, **_validated_input(input)}
    return execution_create(user=schedule.user, agent=schedule.agent, trigger=ExecutionTrigger.MANUAL, input=merged)


def schedules_next_due_at() -> datetime | None:
    """The earliest next_run_at of the enabled schedules (one read of the dispatcher's index)."""
    return Schedule.objects.filter(enabled=True, next_run_at__isnull=False).aggregate(first=Min("next_run_at"))["first"]


def schedules_dispatch_due(*, now: datetime | None = None, batch_size: int = DISPATCH_BATCH_SIZE) -> dict[str, int]:
    """Fire every enabled schedule due by `now` (default: now) once, batch after batch; counts of what happened.

    Run by beat every SCHEDULE_DISPATCH_INTERVAL_SECONDS, by several beats or workers at once without
    harm: on PostgreSQL each batch locks its schedules (SKIP LOCKED, so a concurrent dispatcher takes
    others); on SQLite writers are serialised; and the unique ScheduleFiring (schedule, fire_time)
    refuses a firing time claimed twice whatever happens.
    """
    now = now or timezone.now()
    totals: Counter[str] = Counter()
    while True:
        counts = _dispatch_batch(now=now, batch_size=batch_size)
        totals.update(counts)
        # Every schedule of a batch leaves with next_run_at after now, so the loop ends.
        if counts["due"] < batch_size:
            return {
                name: totals[name] for name in ("due", "fired", "claimed_elsewhere", "missed", "over_quota", "broken")
            }


@transaction.atomic
def _dispatch_batch(*, now: datetime, batch_size: int) -> Counter[str]:
    """One transaction: take up to `batch_size` due schedules, claim their firings, start the executions."""
    due = (
        Schedule.objects.filter(enabled=True, next_run_at__lte=now).select_related("user").order_by("next_run_at", "id")
    )
    if connection.features.has_select_for_update_skip_locked:
        due = due.select_for_update(skip_locked=True, of=("self",))
    schedules = list(due[:batch_size])
    counts: Counter[str] = Counter(due=len(schedules))
    if not schedules:
        return counts
    times: dict[tuple[str, str], tuple[datetime, datetime] | None] = {}  # due schedules often share a few crons
    firings, missed = [], []
    for schedule in schedules:
        key = (schedule.cron, schedule.timezone)
        if key not in times:
            times[key] = _fire_times_or_none(schedule, now)
        if times[key] is None:
            schedule.next_run_at = None  # unusable (logged): it must not block every later dispatch
            counts["broken"] += 1
            continue
        latest, following = times[key]
        schedule.next_run_at = following
        # The latest cron time stands for the whole missed stretch (never replayed once per missed time);
        # it is the firing's time however late the dispatch runs, and is skipped when older than the grace.
        if now - latest > MISFIRE_GRACE:
            missed.append(schedule.id)
            continue
        firings.append(ScheduleFiring(schedule=schedule, fire_time=latest))
    if missed:
        logger.warning(
            "%d schedule(s) missed their firing time by over %s; skipped: %s", len(missed), MISFIRE_GRACE, missed[:20]
        )
    try:
        # Executions first, then their firings in one insert: no row is written twice.
        with transaction.atomic():
            started, refused = _start(firings, claimed=False)
        elsewhere = 0
    except IntegrityError:
        # A firing time claimed already (a concurrent dispatcher without row locks): the savepoint
        # undid the batch, its quota and its enqueueing; now each firing is claimed first, alone.
        claimed = _claim_each(firings)
        started, refused = _start(claimed, claimed=True)
        elsewhere = len(firings) - len(claimed)
    _save_next_runs(schedules, ran={firing.schedule_id for firing in started}, now=now)
    counts.update(fired=len(started), over_quota=refused, missed=len(missed), claimed_elsewhere=elsewhere)
    return counts


def _start(firings: list[ScheduleFiring], *, claimed: bool) -> tuple[list[ScheduleFiring], int]:
    """Start the firings' executions and record the firings; (those started, how many the quota refused)."""
    from .services import executions_create_many

    executions = executions_create_many(
        runs=[(firing.schedule.user, firing.schedule.agent_id, firing.schedule.input) for firing in firings],
        trigger=ExecutionTrigger.SCHEDULE,
    )
    started, refused = [], []
    for firing, execution in zip(firings, executions, strict=True):
        if execution is None:
            refused.append(firing)
            logger.warning(
                "schedule %s: daily execution quota reached; firing at %s not run", firing.schedule_id, firing.fire_time
            )
        else:
            firing.execution = execution
            started.append(firing)
    # A refused firing leaves no record (and no last_run_at), as when the quota refused a firing before.
    if not claimed:
        ScheduleFiring.objects.bulk_create(started)
    else:
        ScheduleFiring.objects.filter(pk__in=[firing.pk for firing in refused]).delete()
        ScheduleFiring.objects.bulk_update(started, ["execution"])
    return started, len(refused)


def _save_next_runs(schedules: list[Schedule], *, ran: set[str], now: datetime) -> None:
    """Store each schedule's new next_run_at (and last_run_at where it ran): one UPDATE per distinct value."""
    groups: defaultdict[tuple[datetime | None, bool], list[str]] = defaultdict(list)
    for schedule in schedules:
        groups[(schedule.next_run_at, schedule.pk in ran)].append(schedule.pk)
    if len(groups) <= 10:  # due schedules mostly share a few crons: a few plain UPDATEs
        for (following, started), ids in groups.items():
            Schedule.objects.filter(pk__in=ids).update(
                next_run_at=following, **({"last_run_at": now} if started else {})
            )
        return
    for schedule in schedules:
        if schedule.pk in ran:
            schedule.last_run_at = now
    # A CASE per row; small batches, as its cost grows with the square of the rows in one statement.
    Schedule.objects.bulk_update(schedules, ["next_run_at", "last_run_at"], batch_size=100)


def _fire_times_or_none(schedule: Schedule, now: datetime) -> tuple[datetime, datetime] | None:
    try:
        return _fire_times(schedule.cron, schedule.timezone, now)
    except (ApplicationError, ZoneInfoNotFoundError, ValueError, KeyError):
        # Saved schedules were validated; a time zone dropped from a newer tzdata could still break one.
        logger.exception(
            "schedule %s: cannot compute its cron times (%r in %s)", schedule.id, schedule.cron, schedule.timezone
        )
        return None


def _claim_each(firings: list[ScheduleFiring]) -> list[ScheduleFiring]:
    """Insert the firings one savepoint each; those whose (schedule, fire_time) exists are someone else's."""
    claimed = []
    for firing in firings:
        fresh = ScheduleFiring(schedule=firing.schedule, fire_time=firing.fire_time)
        try:
            with transaction.atomic():
                fresh.save()
        except IntegrityError:
            continue
        claimed.append(fresh)
    return claimed
