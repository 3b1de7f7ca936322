"""Every route, every method, every kind of bad credential (CONTRACT §1, §2, §6, §11).

The routes come from the URL resolver: a new endpoint is swept without anyone listing it, and it is
public only if it is named in `tests.hostile.routes.PUBLIC`.
"""

import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.services import tokens_issue
from apikeys.models import ApiKey
from apikeys.services import key_create, key_revoke
from tests.conftest import client_for
from tests.hostile.routes import PUBLIC, api_routes
from tests.matrix import assert_envelope

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("unthrottled")]

# Path parameters of the sweep: well-formed ids that belong to nobody (authentication comes first).
ANY_IDS = {
    "agent_id": "agent_sweepAAAAAAAAAAAAAAAA",
    "version": "1",
    "execution_id": "exec_sweepAAAAAAAAAAAAAAAA",
    "chat_id": "chat_sweepAAAAAAAAAAAAAAAA",
    "memory_id": "mem_sweepAAAAAAAAAAAAAAAA",
    "credential_id": "cred_sweepAAAAAAAAAAAAAAAA",
    "key_id": "key_sweepAAAAAAAAAAAAAAAA",
    "file_id": "file_sweepAAAAAAAAAAAAAAAA",
    "name": "file_sweepAAAAAAAAAAAAAAAA.txt",
    "user_id": "user_sweepAAAAAAAAAAAAAAAA",
    "provider_id": "prov_sweepAAAAAAAAAAAAAAAA",
    "model_id": "sweep/model:latest",
}


def send(client: APIClient, route, **headers):
    return getattr(client, route.method.lower())(route.path(ANY_IDS), {}, format="json", **headers)


def routes_needing_a_user():
    return [route for route in api_routes() if route.key not in PUBLIC and not route.takes_api_key]


def routes_needing_an_api_key():
    return [route for route in api_routes() if route.key not in PUBLIC and route.takes_api_key]


def _unsigned_token(user_id: str) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    claims = {"token_type": "access", "user_id": user_id, "jti": "x" * 32, "exp": 9_999_999_999}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def bad_authorization(kind: str, user) -> str | None:
    """The Authorization header of one kind of bad credential for `user`."""
    if kind == "no credentials":
        return None
    if kind == "garbage token":
        return "Bearer garbage"
    if kind == "empty bearer":
        return "Bearer "
    if kind == "overlong token":
        return "Bearer " + "a" * 100_000
    if kind == "three parts":
        return "Bearer a b"
    if kind == "other scheme":
        return "Basic " + base64.b64encode(f"{user.email}:password".encode()).decode()
    if kind == "expired access token":
        token = AccessToken.for_user(user)
        token.set_exp(lifetime=-timedelta(seconds=1))
        return f"Bearer {token}"
    if kind == "refresh token as bearer":
        return f"Bearer {tokens_issue(user=user).refresh_token}"
    if kind == "token signed with another key":
        claims = dict(AccessToken.for_user(user).payload)
        return "Bearer " + jwt.encode(claims, "not-the-signing-key-" + "x" * 32, algorithm="HS256")
    if kind == "unsigned token (alg none)":
        return f"Bearer {_unsigned_token(user.pk)}"
    if kind == "token of a deactivated user":
        header = f"Bearer {tokens_issue(user=user).access_token}"
        user.is_active = False
        user.save(update_fields=["is_active"])
        return header
    if kind == "api key as bearer":
        _key, raw_key, _secret = key_create(user=user, name="k", scopes=["trigger", "upload"], agent_ids=[])
        return f"Bearer {raw_key}"
    raise AssertionError(kind)


BAD_BEARERS = [
    "no credentials",
    "garbage token",
    "empty bearer",
    "overlong token",
    "three parts",
    "other scheme",
    "expired access token",
    "refresh token as bearer",
    "token signed with another key",
    "unsigned token (alg none)",
    "token of a deactivated user",
    "api key as bearer",
]


@pytest.mark.parametrize("kind", BAD_BEARERS)
def test_every_authenticated_route_refuses_a_bad_bearer_with_401(user, kind):
    header = bad_authorization(kind, user)
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    for route in routes_needing_a_user():
        response = send(client, route)
        assert response.status_code == 401, (str(route), kind, response.status_code, response.content[:300])
        assert_envelope(response, 401, "UNAUTHORIZED")


def test_the_same_requests_with_good_credentials_are_not_refused(user, upload_root):
    # The control of the sweeps above: their 401s come from the credential, not from the request.
    _key, raw_key, _secret = key_create(user=user, name="k", scopes=["trigger", "upload"], agent_ids=[])
    for route in routes_needing_a_user():
        response = send(client_for(user), route)
        assert response.status_code not in (401, 500), (str(route), response.status_code, response.content[:300])
    for route in routes_needing_an_api_key():
        response = send(APIClient(), route, HTTP_X_API_KEY=raw_key)
        assert response.status_code not in (401, 500), (str(route), response.status_code, response.content[:300])


def test_an_api_key_opens_no_route_meant_for_users(user):
    _key, raw_key, _secret = key_create(user=user, name="k", scopes=["trigger", "upload"], agent_ids=[])
    client = APIClient()
    for route in routes_needing_a_user():
        response = send(client, route, HTTP_X_API_KEY=raw_key)
        assert response.status_code == 401, (str(route), response.status_code, response.content[:300])
        assert_envelope(response, 401, "UNAUTHORIZED")


def _api_key(user, kind: str) -> str | None:
    if kind == "no key":
        return None
    if kind == "garbage key":
        return "garbage"
    if kind == "unknown key":
        return "cv_live_" + "A" * 43
    if kind == "overlong key":
        return "cv_live_" + "A" * 100_000
    key, raw_key, _secret = key_create(user=user, name=kind, scopes=["trigger", "upload"], agent_ids=[])
    if kind == "revoked key":
        key_revoke(key=key)
    elif kind == "expired key":
        ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif kind == "key of a deactivated user":
        user.is_active = False
        user.save(update_fields=["is_active"])
    else:
        raise AssertionError(kind)
    return raw_key


BAD_KEYS = [
    "no key",
    "garbage key",
    "unknown key",
    "overlong key",
    "revoked key",
    "expired key",
    "key of a deactivated user",
]


@pytest.mark.parametrize("kind", BAD_KEYS)
def test_every_api_key_route_refuses_a_bad_key_with_401(user, kind):
    raw_key = _api_key(user, kind)
    headers = {} if raw_key is None else {"HTTP_X_API_KEY": raw_key}
    routes = routes_needing_an_api_key()
    assert {route.pattern for route in routes} == {
        "api/trigger/<str:agent_id>",
        "api/trigger/status/<str:execution_id>",
        "api/external/upload",
    }
    for route in routes:
        response = send(APIClient(), route, **headers)
        assert response.status_code == 401, (str(route), kind, response.status_code, response.content[:300])
        assert_envelope(response, 401, "UNAUTHORIZED")


def test_a_user_token_opens_no_api_key_route(user):
    for route in routes_needing_an_api_key():
        response = send(client_for(user), route)
        assert response.status_code == 401, (str(route), response.status_code, response.content[:300])
        assert_envelope(response, 401, "UNAUTHORIZED")


def test_every_admin_route_is_403_for_a_normal_user(user):
    client = client_for(user)
    admin_routes = [route for route in api_routes() if route.is_admin]
    assert len(admin_routes) >= 10  # the prefix still matches the admin API
    for route in admin_routes:
        response = send(client, route)
        assert response.status_code == 403, (str(route), response.status_code, response.content[:300])
        assert_envelope(response, 403, "FORBIDDEN")


def test_the_public_routes_are_real_and_answer_without_credentials():
    routes = {route.key: route for route in api_routes()}
    assert set(PUBLIC) <= set(routes), sorted(set(PUBLIC) - set(routes))  # no stale exception
    for key in PUBLIC:
        response = send(APIClient(), routes[key])
        assert response.status_code != 401 and response.status_code < 500, (key, response.status_code)


def test_the_admin_site_asks_anonymous_visitors_to_log_in():
    response = APIClient().get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_sweep_sees_every_app():
    prefixes = {route.pattern.split("/")[1] for route in api_routes() if route.pattern.startswith("api/")}
    assert {"auth", "agents", "executions", "chats", "memories", "keys", "upload", "admin", "credentials"} <= prefixes
    assert settings.REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"] == ["rest_framework.permissions.IsAuthenticated"]
