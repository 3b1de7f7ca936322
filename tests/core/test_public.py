"""Health, privacy policy, OpenAPI schema, and the production-key refusal."""

import os
import subprocess
import sys

import pytest
from django.test import override_settings

from tests.matrix import assert_envelope

pytestmark = pytest.mark.django_db


def test_health_reports_every_check(api_client):
    response = api_client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}
    assert body["version"] and body["timestamp"].endswith("Z")


def test_health_with_database_down_is_503(api_client, monkeypatch):
    from django.db import OperationalError
    from django.db.backends.base.base import BaseDatabaseWrapper

    def refuse(self):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", refuse)
    response = api_client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded" and body["checks"]["database"] == "down"


@override_settings(
    CACHES={
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    },
    CELERY_BROKER_URL="redis://127.0.0.1:1/0",
)
def test_health_with_cache_and_broker_down_is_degraded_but_200(api_client):
    response = api_client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"] == {"database": "ok", "cache": "down", "broker": "down"}


def test_privacy_policy(api_client, tmp_path):
    policy = tmp_path / "policy.md"
    policy.write_text("# Our policy\nWe keep little.")
    with override_settings(PRIVACY_POLICY_FILE=str(policy)):
        body = api_client.get("/api/privacy-policy").json()
    assert body["content"].startswith("# Our policy") and body["updated_at"].endswith("Z")


def test_privacy_policy_missing_file_is_404(api_client, tmp_path):
    with override_settings(PRIVACY_POLICY_FILE=str(tmp_path / "absent.md")):
        assert_envelope(api_client.get("/api/privacy-policy"), 404, "NOT_FOUND")


def test_openapi_schema_is_served_and_valid(api_client):
    from drf_spectacular.validation import validate_schema

    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    for path in ["/api/auth/register", "/api/auth/login", "/api/auth/refresh", "/api/auth/logout", "/api/auth/me"]:
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_schema_generation_has_no_warnings():
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", os.devnull)


def test_interactive_docs_are_served(api_client):
    response = api_client.get("/api/docs/")
    assert response.status_code == 200 and b"swagger" in response.content.lower()


@pytest.mark.parametrize(
    "env,message",
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SECRET_KEY": "a-real-secret-key-for-this-test-0123456789", "ENCRYPTION_KEYS": ""}, "ENCRYPTION_KEYS"),
    ],
)
def test_refuses_default_keys_with_debug_off(env, message):
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ENCRYPTION_KEYS", "DEBUG"}}
    clean.update({key: value for key, value in env.items() if value})
    clean.update(
        DEBUG="false",
        DJANGO_SETTINGS_MODULE="claraverse.settings.base",
        DATA_DIR="/tmp/claraverse-keytest",
        ENV_FILE="",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env=clean,
        capture_output=True,
        text=True,
        cwd=_project_root(),
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_starts_with_real_keys_and_debug_off():
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ENCRYPTION_KEYS", "DEBUG"}}
    clean.update(
        DEBUG="false",
        SECRET_KEY="a-real-secret-key-for-this-test-0123456789",
        ENCRYPTION_KEYS="cmVhbC1lbmNyeXB0aW9uLWtleS1mb3ItdGhpcy10ZXM=",
        DJANGO_SETTINGS_MODULE="claraverse.settings.base",
        DATA_DIR="/tmp/claraverse-keytest",
        ENV_FILE="",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], env=clean, capture_output=True, text=True, cwd=_project_root()
    )
    assert result.returncode == 0, result.stderr


def _project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
