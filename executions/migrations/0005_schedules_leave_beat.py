"""Schedules leave django-celery-beat: drop their per-schedule beat entries, fill `next_run_at`.

The dispatcher (`executions.dispatch_due_schedules`, a static beat entry) fires schedules from
`Schedule.next_run_at` now. Reversing keeps the data: the beat entries are not re-created.
"""

from datetime import UTC, datetime

from croniter import croniter
from django.db import migrations
from django.utils import timezone

FIRE_TASK = "executions.fire_schedule"  # the task of the per-schedule beat entries (removed)


def forward(apps, schema_editor):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from claraverse.errors import ApplicationError
    from executions.schedules import normalize_cron

    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    Schedule = apps.get_model("executions", "Schedule")

    entries = PeriodicTask.objects.filter(task=FIRE_TASK)
    crontab_ids = set(entries.exclude(crontab=None).values_list("crontab_id", flat=True))
    if entries.exists():
        entries.delete()
        # Crontabs only those entries used; any still used by another periodic task stays.
        CrontabSchedule.objects.filter(pk__in=crontab_ids, periodictask=None).delete()
        # Running beats reload their schedule when this marker moves (signals do not fire here).
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})

    now = timezone.now()
    changed = []
    for schedule in Schedule.objects.filter(enabled=True, next_run_at=None).iterator():
        try:
            local = now.astimezone(ZoneInfo(schedule.timezone))
            following = croniter(normalize_cron(schedule.cron), local).get_next(datetime)
        except (ApplicationError, ZoneInfoNotFoundError, ValueError):
            continue  # unusable: it stays without a next run until it is edited
        schedule.next_run_at = following.astimezone(UTC)
        changed.append(schedule)
    Schedule.objects.bulk_update(changed, ["next_run_at"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("executions", "0004_schedule_next_run_at"),
    ]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
