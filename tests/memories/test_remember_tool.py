"""The `remember` tool: stores a memory for the caller through the memories service."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import override_settings

from integrations.tools import ToolArgumentError, ToolContext, tool_registry
from memories.models import Memory
from memories.selectors import memory_content

pytestmark = pytest.mark.django_db


def run(arguments, user):
    return tool_registry.execute("remember", arguments, ToolContext(user=user))


def test_is_registered_as_a_utility():
    tool = tool_registry.get("remember")
    assert tool is not None and tool.category == "utilities" and tool.icon == "Brain"
    assert tool.requires_integration is None and tool.parameters["required"] == ["content"]


def test_stores_a_memory_with_defaults(user, other_user):
    outcome = run({"content": "  Prefers metric units  "}, user)
    assert outcome.success, outcome.error
    memory = Memory.objects.get()
    assert memory.user_id == user.pk and memory_content(memory) == "Prefers metric units"
    assert outcome.result == {
        "id": memory.id,
        "content": "Prefers metric units",
        "category": "fact",
        "importance": "medium",
    }
    assert not Memory.objects.filter(user=other_user).exists()


def test_category_and_importance(user):
    outcome = run({"content": "Always cite sources", "category": "instruction", "importance": "high"}, user)
    assert outcome.result["category"] == "instruction" and outcome.result["importance"] == "high"
    assert Memory.objects.get().importance == "high"


@pytest.mark.parametrize("user_value", [None, AnonymousUser()])
def test_needs_a_user(user_value):
    outcome = run({"content": "anything"}, user_value)
    assert not outcome.success and "signed-in user" in outcome.error
    assert not Memory.objects.exists()


@override_settings(MEMORY_MAX_PER_USER=1)
def test_cap_reached(user):
    assert run({"content": "first"}, user).success
    outcome = run({"content": "second"}, user)
    assert not outcome.success and "Memory limit reached (1 memories)" in outcome.error
    assert Memory.objects.count() == 1


def test_memory_turned_off(user):
    user.preferences = {"memory_enabled": False}
    user.save()
    outcome = run({"content": "anything"}, user)
    assert not outcome.success and "turned memory off" in outcome.error
    assert not Memory.objects.exists()


def test_blank_content(user):
    outcome = run({"content": "   "}, user)
    assert not outcome.success and not Memory.objects.exists()


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"content": ""},
        {"content": "x" * 5001},
        {"content": "ok", "category": "gossip"},
        {"content": "ok", "importance": "urgent"},
        {"content": "ok", "extra": 1},
    ],
)
def test_bad_arguments(user, arguments):
    with pytest.raises(ToolArgumentError):
        run(arguments, user)
    assert not Memory.objects.exists()
