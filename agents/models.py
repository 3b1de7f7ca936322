from django.conf import settings
from django.db import models

from claraverse.ids import new_id


def new_agent_id() -> str:
    return new_id("agent")


class Agent(models.Model):
    """A user's agent: model, system prompt, tools and temperature (CONTRACT §3)."""

    id = models.CharField(primary_key=True, max_length=64, default=new_agent_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    system_prompt = models.TextField(blank=True, default="")
    tools = models.JSONField(default=list, blank=True)
    temperature = models.FloatField(default=0.7)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "id"]
        indexes = [models.Index(fields=["user", "-updated_at"])]

    def __str__(self) -> str:
        return self.name
