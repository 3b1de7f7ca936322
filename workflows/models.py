from django.db import models

from claraverse.ids import new_id


def new_workflow_id() -> str:
    return new_id("workflow")


class Workflow(models.Model):
    """An agent's current graph; every save bumps `version` and keeps a WorkflowVersion snapshot."""

    id = models.CharField(primary_key=True, max_length=64, default=new_workflow_id, editable=False)
    agent = models.OneToOneField("agents.Agent", on_delete=models.CASCADE, related_name="workflow")
    nodes = models.JSONField(default=list)
    edges = models.JSONField(default=list)
    version = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.agent_id} v{self.version}"


class WorkflowVersion(models.Model):
    """An immutable snapshot of one saved version of a workflow."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    nodes = models.JSONField(default=list)
    edges = models.JSONField(default=list)
    description = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "version"], name="workflows_version_unique_per_workflow")
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} v{self.version}"
