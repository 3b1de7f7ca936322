"""Auth endpoints against every rule of CONTRACT §2."""

import os
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import User
from accounts.services import tokens_issue
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.matrix import AccessCase, assert_access_matrix, assert_envelope

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "securepassword123-xyz"


def register(client, email="user@example.com", password=STRONG_PASSWORD, name="John Doe"):
    return client.post("/api/auth/register", {"email": email, "password": password, "name": name}, format="json")


def login(client, email, password=DEFAULT_PASSWORD):
    return client.post("/api/auth/login", {"email": email, "password": password}, format="json")


def refresh(client, token):
    return client.post("/api/auth/refresh", {"refresh_token": token}, format="json")


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


class TestRegister:
    def test_answers_the_api_md_body(self, api_client):
        response = register(api_client)
        assert response.status_code == 201
        body = response.json()
        assert set(body) == {"user", "access_token", "refresh_token", "expires_in"}
        assert set(body["user"]) == {"id", "email", "name", "role", "tier", "created_at"}
        assert body["user"]["id"].startswith("user_") and len(body["user"]["id"]) >= 5 + 16
        assert body["user"]["role"] == "user" and body["user"]["tier"] == "free"
        assert body["user"]["created_at"].endswith("Z")
        assert body["expires_in"] == settings.ACCESS_TOKEN_LIFETIME_SECONDS == 900

    def test_tokens_work_immediately(self, api_client):
        body = register(api_client).json()
        me = bearer(body["access_token"]).get("/api/auth/me")
        assert me.status_code == 200 and me.json()["email"] == "user@example.com"

    def test_email_is_case_insensitive_and_unique(self, api_client):
        assert register(api_client, email="Mixed.Case@Example.com").status_code == 201
        assert User.objects.get().email == "mixed.case@example.com"
        body = assert_envelope(register(api_client, email="MIXED.case@example.COM"), 409, "CONFLICT")
        assert "email" in body["details"]

    def test_password_validators_apply(self, api_client):
        body = assert_envelope(register(api_client, password="123"), 400, "VALIDATION_ERROR")
        assert body["details"]["password"]
        body = assert_envelope(register(api_client, password="password"), 400, "VALIDATION_ERROR")
        assert any("common" in message for message in body["details"]["password"])
        assert_envelope(
            register(api_client, email="john.doe@example.com", password="john.doe@example.com"), 400, "VALIDATION_ERROR"
        )
        assert not User.objects.exists()

    def test_bad_input_names_each_field(self, api_client):
        response = api_client.post("/api/auth/register", {"email": "not-an-email", "role": "admin"}, format="json")
        body = assert_envelope(response, 400, "VALIDATION_ERROR")
        assert "role" in body["details"]  # a client cannot pick its own role
        response = api_client.post("/api/auth/register", {"email": "not-an-email", "password": "x" * 30}, format="json")
        assert set(assert_envelope(response, 400, "VALIDATION_ERROR")["details"]) == {"email"}

    def test_password_is_hashed_with_argon2(self, api_client):
        with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.Argon2PasswordHasher"]):
            register(api_client)
        stored = User.objects.get().password
        assert stored.startswith("argon2$") and STRONG_PASSWORD not in stored

    def test_production_hasher_is_argon2(self):
        from claraverse.settings import base

        assert base.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"


class TestLogin:
    def test_login_returns_user_and_tokens(self, api_client, user):
        response = login(api_client, user.email.upper())
        assert response.status_code == 200
        body = response.json()
        assert body["user"]["id"] == user.id and body["expires_in"] == 900
        user.refresh_from_db()
        assert user.last_login is not None

    @pytest.mark.parametrize("email,password", [("user0@example.com", "wrong-password"), ("nobody@x.com", "x")])
    def test_bad_credentials_are_one_401(self, api_client, email, password):
        UserFactory(email="user0@example.com")
        body = assert_envelope(login(api_client, email, password), 401, "UNAUTHORIZED")
        assert body["error"] == "Invalid email or password."

    def test_inactive_user_cannot_log_in(self, api_client):
        user = UserFactory(is_active=False)
        assert_envelope(login(api_client, user.email), 401, "UNAUTHORIZED")


class TestRefresh:
    def test_rotates_and_kills_the_old_token(self, api_client, user):
        first = login(api_client, user.email).json()
        response = refresh(api_client, first["refresh_token"])
        assert response.status_code == 200
        second = response.json()
        assert set(second) == {"access_token", "refresh_token", "expires_in"}
        assert second["refresh_token"] != first["refresh_token"]
        assert bearer(second["access_token"]).get("/api/auth/me").status_code == 200
        assert_envelope(refresh(api_client, first["refresh_token"]), 401, "UNAUTHORIZED")
        assert refresh(api_client, second["refresh_token"]).status_code == 200

    def test_access_token_is_not_a_refresh_token(self, api_client, user):
        tokens = login(api_client, user.email).json()
        assert_envelope(refresh(api_client, tokens["access_token"]), 401, "UNAUTHORIZED")

    def test_refresh_token_is_not_an_access_token(self, api_client, user):
        tokens = login(api_client, user.email).json()
        assert_envelope(bearer(tokens["refresh_token"]).get("/api/auth/me"), 401, "UNAUTHORIZED")

    @pytest.mark.parametrize("token", ["garbage", "a.b.c", ""])
    def test_malformed_tokens(self, api_client, token):
        status = 400 if token == "" else 401
        assert refresh(api_client, token).status_code == status

    def test_expired_refresh_token(self, api_client, user):
        token = RefreshToken.for_user(user)
        token.set_exp(lifetime=-timedelta(seconds=1))
        assert_envelope(refresh(api_client, str(token)), 401, "UNAUTHORIZED")

    def test_tampered_token(self, api_client, user):
        token = login(api_client, user.email).json()["refresh_token"]
        header, payload, signature = token.split(".")
        tampered = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
        assert_envelope(refresh(api_client, tampered), 401, "UNAUTHORIZED")

    def test_deactivated_user_cannot_refresh(self, api_client, user):
        token = login(api_client, user.email).json()["refresh_token"]
        User.objects.filter(pk=user.pk).update(is_active=False)
        assert_envelope(refresh(api_client, token), 401, "UNAUTHORIZED")


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_with_one_token_yield_one_winner(user):
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        pytest.skip("SQLite serialises writers; the race needs a server database")
    token = tokens_issue(user=user).refresh_token
    statuses = []

    def attempt():
        try:
            statuses.append(refresh(APIClient(), token).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 401, 401, 401]


class TestLogout:
    def test_revokes_the_refresh_token(self, api_client, user):
        tokens = login(api_client, user.email).json()
        client = bearer(tokens["access_token"])
        response = client.post("/api/auth/logout", {"refresh_token": tokens["refresh_token"]}, format="json")
        assert response.status_code == 204 and response.content == b""
        assert_envelope(refresh(api_client, tokens["refresh_token"]), 401, "UNAUTHORIZED")
        # Logging out twice is harmless.
        again = client.post("/api/auth/logout", {"refresh_token": tokens["refresh_token"]}, format="json")
        assert again.status_code == 204

    def test_requires_authentication(self, api_client, user):
        tokens = login(api_client, user.email).json()
        response = api_client.post("/api/auth/logout", {"refresh_token": tokens["refresh_token"]}, format="json")
        assert_envelope(response, 401, "UNAUTHORIZED")
        assert refresh(api_client, tokens["refresh_token"]).status_code == 200

    def test_cannot_revoke_another_users_token(self, api_client, user, other_user):
        theirs = tokens_issue(user=other_user).refresh_token
        mine = bearer(tokens_issue(user=user).access_token)
        assert_envelope(mine.post("/api/auth/logout", {"refresh_token": theirs}, format="json"), 401, "UNAUTHORIZED")
        assert refresh(api_client, theirs).status_code == 200

    def test_body_is_validated(self, auth_client):
        assert_envelope(auth_client.post("/api/auth/logout", {}, format="json"), 400, "VALIDATION_ERROR")


class TestMe:
    def test_get_has_the_api_md_fields(self, auth_client, user):
        body = auth_client.get("/api/auth/me").json()
        assert set(body) == {"id", "email", "name", "role", "tier", "preferences", "created_at"}
        assert body["id"] == user.id and body["preferences"] == {}

    def test_put_updates_only_the_fields_sent(self, auth_client, user):
        response = auth_client.put("/api/auth/me", {"preferences": {"theme": "dark"}}, format="json")
        assert response.status_code == 200
        assert response.json()["preferences"] == {"theme": "dark"} and response.json()["name"] == user.name
        response = auth_client.put("/api/auth/me", {"name": "New Name"}, format="json")
        assert response.json()["name"] == "New Name"
        assert response.json()["preferences"] == {"theme": "dark"}

    @pytest.mark.parametrize(
        "body,field",
        [
            ({"preferences": ["not", "an", "object"]}, "preferences"),
            ({"preferences": {"blob": "x" * 20000}}, "preferences"),
            ({"name": "x" * 201}, "name"),
            ({"email": "new@example.com"}, "email"),
            ({"role": "admin"}, "role"),
            ({"tier": "enterprise"}, "tier"),
        ],
    )
    def test_put_refuses_bad_or_read_only_fields(self, auth_client, user, body, field):
        response = auth_client.put("/api/auth/me", body, format="json")
        assert field in assert_envelope(response, 400, "VALIDATION_ERROR")["details"]
        user.refresh_from_db()
        assert user.role == "user" and user.tier == "free" and user.preferences == {}

    def test_access_matrix(self, auth_client):
        assert_access_matrix(AccessCase("get", "/api/auth/me"), owner=auth_client)
        assert_access_matrix(
            AccessCase("put", "/api/auth/me", body={"name": "Ok"}, bad_body={"name": ["not", "a", "string"]}),
            owner=auth_client,
        )

    def test_expired_access_token(self, user):
        token = AccessToken.for_user(user)
        token.set_exp(lifetime=-timedelta(seconds=1))
        assert_envelope(bearer(str(token)).get("/api/auth/me"), 401, "UNAUTHORIZED")

    def test_deactivated_user_access_token_is_refused(self, auth_client, user):
        User.objects.filter(pk=user.pk).update(is_active=False)
        assert_envelope(auth_client.get("/api/auth/me"), 401, "UNAUTHORIZED")


class TestAdmins:
    def test_superadmin_ids_make_admins(self, user):
        client = bearer(tokens_issue(user=user).access_token)
        assert client.get("/api/auth/me").json()["role"] == "user"
        with override_settings(SUPERADMIN_USER_IDS=[user.id]):
            assert client.get("/api/auth/me").json()["role"] == "admin"
            assert User.objects.get(pk=user.pk).is_admin

    def test_no_implicit_first_user_admin(self, api_client):
        assert register(api_client).json()["user"]["role"] == "user"

    def test_createsuperuser_by_email(self):
        os.environ["DJANGO_SUPERUSER_PASSWORD"] = STRONG_PASSWORD
        try:
            call_command("createsuperuser", "--noinput", "--email", "Root@Example.com", verbosity=0)
        finally:
            del os.environ["DJANGO_SUPERUSER_PASSWORD"]
        admin = User.objects.get(email="root@example.com")
        assert admin.role == "admin" and admin.is_staff and admin.is_superuser and admin.id.startswith("user_")
        assert login(APIClient(), "root@example.com", STRONG_PASSWORD).json()["user"]["role"] == "admin"
