"""The operator admin site: every model's pages render, secrets never show, and the actions work."""

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.test import Client
from django.urls import reverse

from accounts.models import User
from apikeys.models import ApiKey
from apikeys.services import key_create
from executions.models import Execution, Schedule
from executions.schedules import schedule_create
from integrations.credentials import credential_create
from integrations.services import provider_create
from tests.executions.helpers import agent_with_workflow, node
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator():
    client = Client()
    client.force_login(User.objects.create_superuser(email="ops@example.com", password="ops-passphrase-123"))
    return client


@pytest.fixture
def data(user):
    agent = agent_with_workflow(user, [node("s", "trigger", trigger_type="manual")], [])
    key, raw_key, secret = key_create(user=user, name="k", scopes=["trigger"], agent_ids=[])
    credential = credential_create(
        user=user,
        integration_id="slack",
        name="s",
        values={"webhook_url": "https://hooks.slack.com/services/A/B/topsecretvalue"},
    )
    provider = provider_create(name="p", type="openai", api_key="sk-provider-secret-123456789")
    schedule = schedule_create(agent=agent, cron="0 9 * * *")
    execution = Execution.objects.create(user=user, agent_id=agent.id, trigger="api")
    return {
        "raw_key": raw_key,
        "secret": secret,
        "credential": credential,
        "provider": provider,
        "key": key,
        "schedule": schedule,
        "execution": execution,
    }


def test_every_model_renders_without_secrets(operator, data):
    secrets = [data["raw_key"], data["secret"], "topsecretvalue", "sk-provider-secret", data["key"].key_hash]
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        changelist = operator.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert changelist.status_code == 200, meta.label
        obj = model_admin.get_queryset(_request(operator)).first()
        if obj is not None:
            # quote(): the admin's own escaping; a raw id such as "wf_ab1..." reads back as "wf\xab1..." without it.
            change = operator.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[quote(obj.pk)]))
            assert change.status_code == 200, meta.label
            assert not any(secret in change.content.decode() for secret in secrets), meta.label
        assert not any(secret in changelist.content.decode() for secret in secrets), meta.label


def _request(client):
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = User.objects.get(email="ops@example.com")
    return request


def test_actions(operator, data, user):
    def act(model, action, pks):
        meta = model._meta
        response = operator.post(
            reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"), {"action": action, "_selected_action": pks}
        )
        assert response.status_code == 302

    act(ApiKey, "revoke_keys", [data["key"].pk])
    assert ApiKey.objects.get().revoked_at is not None
    act(Execution, "cancel_executions", [data["execution"].pk])
    assert Execution.objects.get().status == "cancelled"
    act(Schedule, "disable_schedules", [data["schedule"].pk])
    schedule = Schedule.objects.get()
    assert schedule.enabled is False and schedule.next_run_at is None
    other = UserFactory()
    act(User, "deactivate_users", [other.pk])
    assert User.objects.get(pk=other.pk).is_active is False


def test_admin_needs_staff(client, data):
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and "/login" in response["Location"]
