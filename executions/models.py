from django.conf import settings
from django.db import models

from claraverse.ids import new_id


def new_execution_id() -> str:
    return new_id("exec")


class ExecutionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)


class ExecutionTrigger(models.TextChoices):
    MANUAL = "manual", "Manual (schedule run now)"
    SCHEDULE = "schedule", "Schedule"
    API = "api", "API key trigger"
    WEBSOCKET = "websocket", "WebSocket"
    AGENT = "agent", "Sub-agent node"
    MCP = "mcp", "MCP"


class Execution(models.Model):
    """One run of an agent's workflow (CONTRACT §4).

    `agent_id` is a plain column, not a foreign key, so that an execution's record outlives its
    agent (deleting an agent stops its executions but keeps their history until retention).
    """

    id = models.CharField(primary_key=True, max_length=64, default=new_execution_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="executions")
    agent_id = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=ExecutionStatus.choices, default=ExecutionStatus.PENDING)
    trigger = models.CharField(max_length=16, choices=ExecutionTrigger.choices)
    input = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    workflow_version = models.PositiveIntegerField(default=0)
    node_results = models.JSONField(default=list, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    depth = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    # Set for API triggers: the key that started the run signs its callback to `webhook_url`.
    api_key = models.ForeignKey(
        "apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="executions"
    )
    webhook_url = models.URLField(max_length=2000, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at"]),
            models.Index(fields=["agent_id", "-created_at"]),
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class ExecutionEvent(models.Model):
    """One event of an execution, in order, so that `subscribe` can replay a run."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=32)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["execution", "seq"]
        constraints = [models.UniqueConstraint(fields=["execution", "seq"], name="executions_event_seq_unique")]

    def __str__(self) -> str:
        return f"{self.execution_id}#{self.seq} {self.type}"


def new_schedule_id() -> str:
    return new_id("sched")


class Schedule(models.Model):
    """An agent's cron schedule (one per agent) in its own time zone, fired by the schedule dispatcher.

    `next_run_at` (UTC) is the next cron time to fire, kept by the services on create and update; it
    is null while the schedule is disabled, so the dispatcher's index holds only schedules that can fire.
    """

    id = models.CharField(primary_key=True, max_length=40, default=new_schedule_id, editable=False)
    agent = models.OneToOneField("agents.Agent", on_delete=models.CASCADE, related_name="schedule")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="schedules")
    cron = models.CharField(max_length=120)
    timezone = models.CharField(max_length=64, default="UTC")
    enabled = models.BooleanField(default=True)
    input = models.JSONField(default=dict, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_run_at"], name="executions_schedule_due", condition=models.Q(next_run_at__isnull=False)
            )
        ]

    def __str__(self) -> str:
        return f"{self.agent_id}: {self.cron} ({self.timezone})"


class ScheduleFiring(models.Model):
    """One firing time of a schedule; the unique row makes each firing run at most once."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="firings")
    fire_time = models.DateTimeField()
    execution = models.ForeignKey(Execution, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["schedule", "fire_time"], name="executions_firing_once")]

    def __str__(self) -> str:
        return f"{self.schedule_id} at {self.fire_time:%Y-%m-%d %H:%M}"
