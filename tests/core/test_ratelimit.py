"""Rate limits of CONTRACT §13: 429 RATE_LIMIT with Retry-After, counted in the shared cache."""

import os
import subprocess
import sys

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.conftest import client_for
from tests.matrix import assert_envelope

pytestmark = pytest.mark.django_db


def assert_rate_limited(response):
    body = assert_envelope(response, 429, "RATE_LIMIT")
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    assert body["details"] == {"retry_after": retry_after}


@override_settings(RATE_LIMIT_AUTHENTICATED=5)
def test_sixth_authenticated_request_in_a_minute_is_429(user, other_user):
    client = client_for(user)
    for _ in range(5):
        assert client.get("/api/auth/me").status_code == 200
    assert_rate_limited(client.get("/api/auth/me"))
    # Counted per user: someone else from the same address is unaffected.
    assert client_for(other_user).get("/api/auth/me").status_code == 200


@override_settings(RATE_LIMIT_PUBLIC_READ=3)
def test_public_endpoints_are_limited_per_ip(api_client):
    for _ in range(3):
        assert api_client.get("/api/privacy-policy").status_code == 200
    assert_rate_limited(api_client.get("/api/privacy-policy"))
    assert APIClient(REMOTE_ADDR="10.1.2.3").get("/api/privacy-policy").status_code == 200


@override_settings(RATE_LIMIT_GLOBAL_API=4, RATE_LIMIT_PUBLIC_READ=100)
def test_global_limit_counts_every_api_request_per_ip(api_client):
    api_client.get("/api/privacy-policy")
    api_client.get("/api/unknown-route")
    api_client.post("/api/auth/login", {}, format="json")
    api_client.get("/api/auth/me")
    assert_rate_limited(api_client.get("/api/privacy-policy"))
    assert_rate_limited(api_client.get("/api/unknown-route"))


@override_settings(RATE_LIMIT_GLOBAL_API=1, RATE_LIMIT_PUBLIC_READ=1)
def test_health_is_never_limited(api_client):
    for _ in range(5):
        assert api_client.get("/health").status_code == 200


@override_settings(RATE_LIMIT_PUBLIC_READ=2, TRUSTED_PROXY_COUNT=1)
def test_trusted_proxy_forwarded_address_is_the_client():
    for _ in range(2):
        APIClient().get("/api/privacy-policy", HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.9")
    assert_rate_limited(APIClient().get("/api/privacy-policy", HTTP_X_FORWARDED_FOR="203.0.113.9"))
    assert APIClient().get("/api/privacy-policy", HTTP_X_FORWARDED_FOR="203.0.113.10").status_code == 200


@override_settings(RATE_LIMIT_PUBLIC_READ=2, TRUSTED_PROXY_COUNT=0)
def test_forwarded_header_is_ignored_without_trusted_proxies():
    APIClient().get("/api/privacy-policy", HTTP_X_FORWARDED_FOR="198.51.100.1")
    APIClient().get("/api/privacy-policy", HTTP_X_FORWARDED_FOR="198.51.100.2")
    assert_rate_limited(APIClient().get("/api/privacy-policy", HTTP_X_FORWARDED_FOR="198.51.100.3"))


@override_settings(
    RATE_LIMIT_AUTHENTICATED=1,
    CACHES={
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    },
)
def test_limiter_fails_open_when_the_cache_is_down(user):
    client = client_for(user)
    assert [client.get("/api/auth/me").status_code for _ in range(3)] == [200, 200, 200]


@override_settings(RATE_LIMIT_AUTHENTICATED=0)
def test_zero_disables_a_limit(auth_client):
    assert all(auth_client.get("/api/auth/me").status_code == 200 for _ in range(10))


def test_limits_come_from_the_environment():
    env = {
        **os.environ,
        "RATE_LIMIT_AUTHENTICATED": "5",
        "RATE_LIMIT_WEBSOCKET": "7",
        "DJANGO_SETTINGS_MODULE": "claraverse.settings.test",
    }
    code = "from django.conf import settings as s; print(s.RATE_LIMIT_AUTHENTICATED, s.RATE_LIMIT_WEBSOCKET)"
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert output.stdout.split() == ["5", "7"]
