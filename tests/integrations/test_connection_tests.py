"""Credential connection tests: real calls to loopback peers, (success, message) answers, no secret in them."""

from __future__ import annotations

import pytest

from integrations.catalogue import INTEGRATIONS
from integrations.connection_tests import CONNECTION_TESTS, TEST_MESSAGE, UNEXPECTED_FAILURE
from tests.support.http_peer import Answer, HTTPPeer
from tests.support.smtp_server import SMTPTestServer, make_tls_files

SECRET = "ConnTestSecret98765"
PASSWORD = "smtp-pass-0a9b8c"
AUTHORIZATION = "Bearer conn-test-auth-5566"


@pytest.fixture
def peer():
    with HTTPPeer() as server:
        yield server


@pytest.fixture(autouse=True)
def private_allowed(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    settings.TOOL_HTTP_TIMEOUT_SECONDS = 2
    settings.SMTP_TIMEOUT_SECONDS = 2


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def check(integration_id, fields):
    success, message = CONNECTION_TESTS[integration_id](fields)
    assert isinstance(success, bool)
    for secret in (SECRET, PASSWORD, AUTHORIZATION):
        assert secret not in message
    return success, message


def test_every_integration_has_a_test():
    assert set(CONNECTION_TESTS) == set(INTEGRATIONS)


class TestSlack:
    path = f"/services/T1/B1/{SECRET}"

    def test_success_posts_a_test_message(self, peer):
        peer.on("POST", self.path, Answer(body="ok"))
        assert check("slack", {"webhook_url": peer.url(self.path)}) == (
            True,
            "Slack accepted the test message (HTTP 200).",
        )
        assert peer.requests[0].json() == {"text": TEST_MESSAGE}

    def test_refused(self, peer):
        peer.on("POST", self.path, Answer(status=403, body="invalid_token"))
        assert check("slack", {"webhook_url": peer.url(self.path)}) == (
            False,
            "Slack refused the message (HTTP 403: invalid_token).",
        )


class TestDiscord:
    path = f"/api/webhooks/42/{SECRET}"

    def test_success(self, peer):
        peer.on("POST", self.path, Answer(status=204))
        assert check("discord", {"webhook_url": peer.url(self.path)}) == (
            True,
            "Discord accepted the test message (HTTP 204).",
        )
        assert peer.requests[0].json()["content"] == TEST_MESSAGE

    def test_unknown_webhook(self, peer):
        peer.on("POST", self.path, Answer(status=404, json={"message": "Unknown Webhook", "code": 10015}))
        assert check("discord", {"webhook_url": peer.url(self.path)}) == (
            False,
            "Discord refused the message (HTTP 404: Unknown Webhook).",
        )


class TestWebhook:
    path = f"/in/{SECRET}"

    def test_success_sends_a_ping_with_the_authorization(self, peer):
        peer.on("POST", self.path, Answer(status=200, body=f"echo {AUTHORIZATION}"))
        success, message = check("webhook", {"url": peer.url(self.path), "authorization": AUTHORIZATION})
        assert (success, message) == (True, "The endpoint accepted the test event (HTTP 200).")
        request = peer.requests[0]
        body = request.json()
        assert body["event"] == "ping"
        assert body["data"]["message"] == "ClaraVerse connection test"
        assert request.headers["authorization"] == AUTHORIZATION

    def test_an_error_status(self, peer):
        peer.on("POST", self.path, Answer(status=500, body=f"crash at {peer.url(self.path)}"))
        assert check("webhook", {"url": peer.url(self.path)}) == (
            False,
            "The webhook endpoint answered HTTP 500: crash at [redacted]",
        )

    def test_a_slow_endpoint(self, peer, settings):
        settings.TOOL_HTTP_TIMEOUT_SECONDS = 0.3
        peer.on("POST", self.path, Answer(status=200, delay=3))
        success, message = check("webhook", {"url": peer.url(self.path)})
        assert not success
        assert message.startswith("Could not reach the webhook endpoint")


class TestSearxng:
    def test_success(self, peer):
        peer.on("GET", "/search", Answer(json={"results": [{"title": "a", "url": "https://a.example/"}]}))
        assert check("searxng", {"base_url": peer.url()}) == (True, "The search worked (1 result).")
        assert peer.requests[0].query["format"] == ["json"]

    def test_json_disabled(self, peer):
        peer.on("GET", "/search", Answer(status=403, body="Forbidden"))
        success, message = check("searxng", {"base_url": peer.url()})
        assert not success
        assert "JSON output may be disabled" in message


class TestEmail:
    def account(self, server, **overrides):
        return {
            "host": "localhost",
            "port": server.port,
            "security": "starttls",
            "username": "ana",
            "password": PASSWORD,
            "from_address": "bot@example.com",
            **overrides,
        }

    def test_connects_secures_and_logs_in_without_sending(self, settings, tls):
        settings.SMTP_CA_FILE = str(tls.ca_file)
        with SMTPTestServer(tls=tls, users={"ana": PASSWORD}) as server:
            result = check("email", self.account(server))
        assert result == (True, f"Connected to localhost:{server.port} (STARTTLS) and logged in.")
        assert server.logins == [("ana", True)]
        assert server.messages == []

    def test_implicit_tls_without_login(self, settings, tls):
        settings.SMTP_CA_FILE = str(tls.ca_file)
        with SMTPTestServer(tls=tls, implicit_tls=True) as server:
            result = check("email", self.account(server, security="ssl", username=""))
        assert result == (True, f"Connected to localhost:{server.port} (TLS).")

    def test_wrong_password(self, settings, tls):
        settings.SMTP_CA_FILE = str(tls.ca_file)
        with SMTPTestServer(tls=tls, users={"ana": "something-else"}) as server:
            result = check("email", self.account(server))
        assert result == (False, "The mail server rejected the username or password.")


@pytest.mark.parametrize(
    ("integration_id", "fields"),
    [
        ("slack", {"webhook_url": "http://127.0.0.1:9/services/T/B/" + SECRET}),
        ("discord", {"webhook_url": "http://127.0.0.1:9/api/webhooks/1/" + SECRET}),
        ("webhook", {"url": "http://127.0.0.1:9/in/" + SECRET, "authorization": AUTHORIZATION}),
        ("searxng", {"base_url": "http://127.0.0.1:9/" + SECRET}),
        ("email", {"host": "127.0.0.1", "port": 9, "username": "ana", "password": PASSWORD, "from_address": "a@b.c"}),
    ],
)
class TestFailuresAreReportedNotRaised:
    def test_nobody_listening(self, integration_id, fields):
        # Port 9 (discard) is closed on loopback: the connection is refused at once.
        success, message = check(integration_id, fields)
        assert not success
        assert "connect" in message.lower() or "reach" in message.lower()

    def test_a_private_address_is_refused(self, settings, integration_id, fields):
        settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
        success, message = check(integration_id, fields)
        assert not success
        assert "private or reserved" in message


@pytest.mark.parametrize(
    ("integration_id", "fields", "fragment"),
    [
        ("slack", {}, "The Slack credential has no 'webhook_url'"),
        ("discord", {"webhook_url": ""}, "The Discord credential has no 'webhook_url'"),
        ("webhook", {"authorization": AUTHORIZATION}, "The webhook credential has no 'url'"),
        ("searxng", {}, "The SearXNG credential has no 'base_url'"),
        ("email", {"host": "smtp.example.com"}, "The email credential has no 'from_address'"),
        ("slack", {"webhook_url": "ftp://example.com/" + SECRET}, "Only http and https URLs are allowed"),
    ],
)
def test_incomplete_credentials(integration_id, fields, fragment):
    success, message = check(integration_id, fields)
    assert not success
    assert fragment in message


def test_an_unexpected_error_is_a_failed_test_not_an_exception(caplog):
    # A credential whose fields cannot even be read (a bug elsewhere) must not break the endpoint.
    assert CONNECTION_TESTS["slack"](None) == (False, UNEXPECTED_FAILURE)
    assert "Connection test check_slack raised" in caplog.text
