"""Connection test, benchmark and model import against a loopback provider (CONTRACT §11)."""

import pytest
from django.test import override_settings

from integrations.models import LLMModel, LLMUsage
from tests.conftest import client_for
from tests.factories import UserFactory
from tests.matrix import assert_envelope
from tests.support.llm_server import Reply, create_model, create_provider

pytestmark = pytest.mark.django_db(transaction=True)

VALID_JSON = '{"city": "Tokyo", "country": "Japan", "population": 14000000}'


@pytest.fixture
def admin_client():
    return client_for(UserFactory(role="admin"))


@pytest.fixture
def model(llm_server):
    return create_model(create_provider(llm_server, "openai", api_key="sk-admin-test-0123456789"), "org/model:v1")


def test_connection_success_is_stored(admin_client, llm_server, model):
    llm_server.enqueue(Reply(text="OK"))
    response = admin_client.post("/api/admin/models/org/model:v1/test/connection")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["latency_ms"] >= 0 and "OK" in body["message"]
    model.refresh_from_db()
    assert model.last_connection_test["success"] is True and model.last_connection_test["tested_at"].endswith("Z")
    assert LLMUsage.objects.get().source == "system"


@override_settings(LLM_MAX_ATTEMPTS=1)
def test_connection_failure_answers_success_false(admin_client, llm_server, model):
    llm_server.enqueue(Reply(status=401, error_message="invalid api key sk-admin-test-0123456789"))
    body = admin_client.post("/api/admin/models/org/model:v1/test/connection").json()
    assert body["success"] is False and "sk-admin-test" not in body["message"]


def test_connection_test_works_on_a_disabled_model(admin_client, llm_server, model):
    LLMModel.objects.filter(pk=model.pk).update(enabled=False)
    llm_server.enqueue(Reply(text="OK"))
    assert admin_client.post("/api/admin/models/org/model:v1/test/connection").json()["success"] is True


@override_settings(LLM_BENCHMARK_RUNS=2)
def test_benchmark_measures_and_validates_structured_output(admin_client, llm_server, model):
    # Two runs: each a timed answer then a structured one; the second structured answer breaks the schema.
    llm_server.enqueue(
        Reply(text="The sea is wide. " * 3, chunks=6, chunk_interval=0.01, completion_tokens=30),
        Reply(text=VALID_JSON),
        Reply(text="The sea is deep. " * 3, chunks=6, chunk_interval=0.01, completion_tokens=30),
        Reply(text='{"city": "Tokyo", "country": "Japan", "population": "many"}'),
    )
    response = admin_client.post("/api/admin/models/org/model:v1/benchmark")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {
        "model_id",
        "runs",
        "ttft_ms",
        "tokens_per_second",
        "latency_ms",
        "structured_output_pass_rate",
        "tested_at",
    }
    assert body["model_id"] == "org/model:v1" and body["runs"] == 2
    assert body["structured_output_pass_rate"] == 0.5
    assert body["tokens_per_second"] > 0 and body["latency_ms"] >= body["ttft_ms"] >= 0
    structured_request = llm_server.chat_requests[1].body
    assert structured_request["response_format"]["type"] == "json_schema"
    model.refresh_from_db()
    assert model.last_benchmark == body


@override_settings(LLM_MAX_ATTEMPTS=1)
def test_benchmark_with_a_failing_provider_is_a_provider_error(admin_client, llm_server, model):
    llm_server.enqueue(Reply(status=500))
    assert_envelope(admin_client.post("/api/admin/models/org/model:v1/benchmark"), 502, "PROVIDER_ERROR")


def test_import_models_from_the_provider(admin_client, llm_server):
    provider = create_provider(llm_server, "openai")
    create_model(provider, "gpt-test-small")
    response = admin_client.post(f"/api/admin/providers/{provider.id}/models/import")
    assert response.status_code == 200
    body = response.json()
    assert [m["id"] for m in body["imported"]] == ["gpt-test-large"]
    assert body["skipped"] == [{"id": "gpt-test-small", "reason": "already registered"}]
    # OpenAI-style listings carry no display name, so the id stands in for it.
    assert LLMModel.objects.get(pk="gpt-test-large").display_name == "gpt-test-large"
