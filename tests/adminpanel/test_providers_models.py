"""Admin provider and model management, and the public provider/model endpoints (CONTRACT §11)."""

import pytest
from django.db import connection
from django.test import override_settings

from integrations.models import LLMModel, Provider
from tests.conftest import client_for
from tests.factories import UserFactory
from tests.matrix import assert_envelope

pytestmark = pytest.mark.django_db

SECRET_KEY_VALUE = "sk-live-abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.fixture
def admin_client():
    return client_for(UserFactory(role="admin"))


@pytest.fixture
def provider(admin_client):
    response = admin_client.post(
        "/api/admin/providers",
        {
            "name": "OpenRouter",
            "type": "openai_compatible",
            "base_url": "https://openrouter.ai/api/v1",
            "api_key": SECRET_KEY_VALUE,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def create_model(admin_client, provider_id, model_id="meta-llama/llama-3.1-8b:free", **extra):
    return admin_client.post("/api/admin/models", {"id": model_id, "provider_id": provider_id, **extra}, format="json")


class TestAdminAccess:
    @pytest.mark.parametrize(
        "method,path",
        [
            ("get", "/api/admin/providers"),
            ("post", "/api/admin/providers"),
            ("put", "/api/admin/providers/prov_x"),
            ("delete", "/api/admin/providers/prov_x"),
            ("put", "/api/admin/providers/prov_x/toggle"),
            ("post", "/api/admin/providers/prov_x/models/import"),
            ("get", "/api/admin/models"),
            ("post", "/api/admin/models"),
            ("put", "/api/admin/models/a/b:c"),
            ("delete", "/api/admin/models/a/b:c"),
            ("post", "/api/admin/models/a/b:c/test/connection"),
            ("post", "/api/admin/models/a/b:c/benchmark"),
        ],
    )
    def test_anonymous_401_and_non_admin_403(self, api_client, auth_client, method, path):
        assert_envelope(getattr(api_client, method)(path, {}, format="json"), 401, "UNAUTHORIZED")
        assert_envelope(getattr(auth_client, method)(path, {}, format="json"), 403, "FORBIDDEN")

    def test_superadmin_ids_grant_access(self, user, auth_client):
        with override_settings(SUPERADMIN_USER_IDS=[user.id]):
            assert auth_client.get("/api/admin/providers").status_code == 200


class TestProviders:
    def test_create_never_returns_the_key_and_stores_it_encrypted(self, admin_client, provider):
        assert set(provider) == {"id", "name", "type", "base_url", "enabled", "api_key_preview", "created_at"}
        assert provider["id"].startswith("prov_") and provider["enabled"] is True
        assert SECRET_KEY_VALUE not in str(provider)
        assert provider["api_key_preview"].endswith(SECRET_KEY_VALUE[-4:]) and "…" in provider["api_key_preview"]
        listed = admin_client.get("/api/admin/providers").json()
        assert listed["total"] == 1 and SECRET_KEY_VALUE not in str(listed)
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM integrations_provider")
            assert SECRET_KEY_VALUE not in str(cursor.fetchall())

    def test_default_base_url_per_type(self, admin_client):
        body = admin_client.post("/api/admin/providers", {"name": "o", "type": "openai"}, format="json").json()
        assert body["base_url"] == "https://api.openai.com/v1" and body["api_key_preview"] == ""
        response = admin_client.post("/api/admin/providers", {"name": "c", "type": "openai_compatible"}, format="json")
        assert "base_url" in assert_envelope(response, 400, "VALIDATION_ERROR")["details"]

    @pytest.mark.parametrize(
        "body,field",
        [
            ({"name": "x", "type": "bogus"}, "type"),
            ({"type": "openai"}, "name"),
            ({"name": "x", "type": "openai", "base_url": "ftp://example.com"}, "base_url"),
            ({"name": "x", "type": "openai", "api_key_preview": "abc"}, "api_key_preview"),
            ({"name": "x" * 101, "type": "openai"}, "name"),
        ],
    )
    def test_create_validation(self, admin_client, body, field):
        response = admin_client.post("/api/admin/providers", body, format="json")
        assert field in assert_envelope(response, 400, "VALIDATION_ERROR")["details"]

    def test_duplicate_name_is_409(self, admin_client, provider):
        response = admin_client.post("/api/admin/providers", {"name": "OpenRouter", "type": "openai"}, format="json")
        assert_envelope(response, 409, "CONFLICT")

    def test_update_partial_and_key_handling(self, admin_client, provider):
        path = f"/api/admin/providers/{provider['id']}"
        body = admin_client.put(path, {"name": "Renamed"}, format="json").json()
        assert body["name"] == "Renamed" and body["api_key_preview"] == provider["api_key_preview"]
        body = admin_client.put(path, {"api_key": "new-key-0123456789abcdefghij"}, format="json").json()
        assert body["api_key_preview"].endswith("ghij")
        body = admin_client.put(path, {"api_key": ""}, format="json").json()
        assert body["api_key_preview"] == "" and Provider.objects.get().api_key_encrypted == ""

    def test_toggle(self, admin_client, provider):
        path = f"/api/admin/providers/{provider['id']}/toggle"
        assert admin_client.put(path).json()["enabled"] is False
        assert admin_client.put(path).json()["enabled"] is True

    def test_delete_removes_models(self, admin_client, provider):
        create_model(admin_client, provider["id"])
        response = admin_client.delete(f"/api/admin/providers/{provider['id']}")
        assert response.status_code == 204 and response.content == b""
        assert not LLMModel.objects.exists()
        assert_envelope(admin_client.delete(f"/api/admin/providers/{provider['id']}"), 404, "NOT_FOUND")

    def test_unknown_provider_is_404(self, admin_client):
        assert_envelope(
            admin_client.put("/api/admin/providers/prov_nope", {"name": "x"}, format="json"), 404, "NOT_FOUND"
        )

    def test_list_pagination_validation(self, admin_client):
        for query in ["limit=0", "limit=101", "offset=-1", "limit=abc"]:
            assert_envelope(admin_client.get(f"/api/admin/providers?{query}"), 400, "VALIDATION_ERROR")


class TestModels:
    def test_create_with_slash_and_colon_id_and_every_route(self, admin_client, provider):
        response = create_model(admin_client, provider["id"], context_length=131072)
        assert response.status_code == 201
        body = response.json()
        assert body["id"] == "meta-llama/llama-3.1-8b:free" and body["provider_id"] == provider["id"]
        assert body["name"] == body["id"] and body["display_name"] == body["id"]
        updated = admin_client.put(
            "/api/admin/models/meta-llama/llama-3.1-8b:free", {"display_name": "Llama 3.1 8B"}, format="json"
        )
        assert updated.status_code == 200 and updated.json()["display_name"] == "Llama 3.1 8B"
        encoded = admin_client.put(
            "/api/admin/models/meta-llama%2Fllama-3.1-8b:free", {"enabled": False}, format="json"
        )
        assert encoded.status_code == 200 and encoded.json()["enabled"] is False
        assert admin_client.delete("/api/admin/models/meta-llama/llama-3.1-8b:free").status_code == 204
        assert_envelope(admin_client.delete("/api/admin/models/meta-llama/llama-3.1-8b:free"), 404, "NOT_FOUND")

    def test_duplicate_id_is_409(self, admin_client, provider):
        create_model(admin_client, provider["id"], "gpt-4o")
        assert_envelope(create_model(admin_client, provider["id"], "gpt-4o"), 409, "CONFLICT")

    @pytest.mark.parametrize(
        "model_id", ["", "has space", "/leading", "trailing/", "a//b", "x/benchmark", "a/test/connection", "é"]
    )
    def test_bad_ids(self, admin_client, provider, model_id):
        assert (
            "id"
            in assert_envelope(create_model(admin_client, provider["id"], model_id), 400, "VALIDATION_ERROR")["details"]
        )

    def test_unknown_provider_id_is_a_field_error(self, admin_client):
        response = create_model(admin_client, "prov_missing")
        assert "provider_id" in assert_envelope(response, 400, "VALIDATION_ERROR")["details"]

    def test_list_filters_by_provider(self, admin_client, provider):
        other = admin_client.post("/api/admin/providers", {"name": "o", "type": "openai"}, format="json").json()
        create_model(admin_client, provider["id"], "a")
        create_model(admin_client, other["id"], "b")
        body = admin_client.get(f"/api/admin/models?provider_id={other['id']}").json()
        assert [model["id"] for model in body["models"]] == ["b"] and body["total"] == 1

    def test_test_connection_on_unknown_model_is_404(self, admin_client):
        assert_envelope(admin_client.post("/api/admin/models/none/test/connection"), 404, "NOT_FOUND")


class TestPublic:
    def test_public_lists_show_enabled_only_without_secrets(self, api_client, admin_client, provider):
        create_model(admin_client, provider["id"], "visible")
        create_model(admin_client, provider["id"], "hidden", enabled=False)
        off = admin_client.post(
            "/api/admin/providers", {"name": "off", "type": "openai", "enabled": False}, format="json"
        ).json()
        create_model(admin_client, off["id"], "of-disabled-provider")
        providers = api_client.get("/api/providers").json()
        assert [p["name"] for p in providers["providers"]] == ["OpenRouter"] and providers["total"] == 1
        assert set(providers["providers"][0]) == {"id", "name", "type", "enabled", "created_at"}
        models = api_client.get("/api/models").json()
        assert [m["id"] for m in models["models"]] == ["visible"]
        assert set(models["models"][0]) == {
            "id",
            "provider_id",
            "name",
            "display_name",
            "context_length",
            "supports_tools",
            "supports_streaming",
            "supports_vision",
            "enabled",
        }

    def test_recommended_models(self, api_client, admin_client, provider):
        assert api_client.get("/api/config/recommended-models").json() == {"default": None, "fast": None, "smart": None}
        create_model(admin_client, provider["id"], "big", context_length=200000)
        create_model(admin_client, provider["id"], "small", context_length=8000)
        assert api_client.get("/api/config/recommended-models").json() == {
            "default": "big",
            "fast": "small",
            "smart": "big",
        }
        with override_settings(RECOMMENDED_MODEL_DEFAULT="small", RECOMMENDED_MODEL_SMART="not-registered"):
            assert api_client.get("/api/config/recommended-models").json() == {
                "default": "small",
                "fast": "small",
                "smart": "big",
            }


class TestEnvProviders:
    def test_sync_creates_and_updates_from_environment(self):
        from integrations.services import providers_sync_from_env

        declared = [
            {
                "name": "openai",
                "type": "openai",
                "base_url": "",
                "api_key": "sk-env-1234567890abcdef",
                "models": ["gpt-4o", "gpt-4o-mini"],
            }
        ]
        with override_settings(LLM_ENV_PROVIDERS=declared):
            providers_sync_from_env()
            providers_sync_from_env()  # idempotent
        provider = Provider.objects.get()
        assert provider.source == "env" and provider.base_url == "https://api.openai.com/v1"
        assert sorted(LLMModel.objects.values_list("id", flat=True)) == ["gpt-4o", "gpt-4o-mini"]
        assert "sk-env" not in provider.api_key_encrypted

    def test_settings_parse_environment_variables(self):
        import os
        import subprocess
        import sys

        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "claraverse.settings.test",
            "OLLAMA_BASE_URL": "http://ollama:11434",
            "OLLAMA_MODELS": "llama3,qwen2",
            "ANTHROPIC_API_KEY": "sk-ant-x",
            "LLM_PROVIDERS": '[{"name": "vllm", "type": "openai_compatible", "base_url": "http://vllm:8000/v1"}]',
        }
        code = "from django.conf import settings as s; print([(p['name'], p['models']) for p in s.LLM_ENV_PROVIDERS])"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        assert out.strip() == "[('anthropic', []), ('ollama', ['llama3', 'qwen2']), ('vllm', [])]"
