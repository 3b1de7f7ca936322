"""send_slack, send_discord, send_webhook (loopback HTTP peers) and send_email (a loopback SMTP server)."""

from __future__ import annotations

import socket
import time

import pytest

from integrations.tools import ToolArgumentError, ToolContext, ToolExecutionError, tool_registry
from tests.support.http_peer import Answer, HTTPPeer
from tests.support.smtp_server import SMTPTestServer, make_tls_files

SECRET = "XyZsecretTOKEN123"
SLACK_PATH = f"/services/T0001/B0001/{SECRET}"
DISCORD_PATH = f"/api/webhooks/1234/{SECRET}"
HOOK_PATH = f"/hooks/{SECRET}"
AUTHORIZATION = "Bearer hook-authorization-9f8e7d"
SHORT_TIMEOUT_SECONDS = 0.3
SLOW_ANSWER_SECONDS = 3.0


@pytest.fixture
def peer():
    with HTTPPeer() as server:
        yield server


@pytest.fixture(autouse=True)
def private_allowed(settings):
    # Loopback peers are private addresses; the refusal tests switch this off again.
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    return settings


def credentials_for(integration, fields):
    def credentials(integration_id):
        if integration_id != integration:
            raise ToolExecutionError(f"No {integration_id} credential is configured.")
        return fields

    return credentials


def failing_credentials(message):
    def credentials(integration_id):
        raise ToolExecutionError(message)

    return credentials


def run(name, arguments, credentials):
    return tool_registry.execute(name, arguments, ToolContext(credentials=credentials))


def assert_failed(outcome, *fragments):
    assert not outcome.success, outcome.result
    for fragment in fragments:
        assert fragment in outcome.error, outcome.error
    # Whatever went wrong, the webhook URL's secret part and the Authorization value stay out of the message.
    assert SECRET not in outcome.error
    assert AUTHORIZATION not in outcome.error


@pytest.mark.parametrize(
    ("name", "integration", "icon"),
    [
        ("send_slack", "slack", "MessageSquare"),
        ("send_discord", "discord", "MessageCircle"),
        ("send_webhook", "webhook", "Webhook"),
        ("send_email", "email", "Mail"),
    ],
)
def test_definitions(name, integration, icon):
    tool = tool_registry.get(name)
    assert (tool.category, tool.requires_integration, tool.icon) == ("communication", integration, icon)
    assert tool.parameters["additionalProperties"] is False
    assert tool.keywords


@pytest.mark.parametrize("name", ["send_slack", "send_discord", "send_webhook", "send_email"])
@pytest.mark.parametrize(
    "message",
    ["No credential is configured; add one under Credentials.", "Several credentials exist; choose one."],
)
def test_credential_lookup_errors_are_the_outcome(name, message):
    arguments = {
        "send_slack": {"text": "hi"},
        "send_discord": {"content": "hi"},
        "send_webhook": {"data": {}},
        "send_email": {"to": ["a@example.com"], "subject": "s", "body": "b"},
    }[name]
    outcome = run(name, arguments, failing_credentials(message))
    assert (outcome.success, outcome.error) == (False, message)


def test_without_a_credentials_resolver_the_tool_asks_for_one():
    outcome = tool_registry.execute("send_slack", {"text": "hi"}, ToolContext())
    assert_failed(outcome, "needs a configured 'slack' credential")


# --- Slack ----------------------------------------------------------------------------------------


class TestSendSlack:
    def slack(self, peer):
        return credentials_for("slack", {"webhook_url": peer.url(SLACK_PATH)})

    def test_posts_the_text(self, peer):
        peer.on("POST", SLACK_PATH, Answer(body="ok"))
        outcome = run("send_slack", {"text": "Deploy *done*", "unfurl_links": False}, self.slack(peer))
        assert outcome.success, outcome.error
        assert outcome.result == {"sent": True, "status": 200}
        [request] = peer.requests
        assert request.json() == {"text": "Deploy *done*", "unfurl_links": False}
        assert request.headers["content-type"] == "application/json"

    @pytest.mark.parametrize(
        ("answer", "expected"),
        [
            (Answer(status=404, body="no_service"), "Slack refused the message (HTTP 404: no_service)."),
            (Answer(status=400, body="invalid_payload"), "Slack refused the message (HTTP 400: invalid_payload)."),
            (Answer(status=500, body=f"<html>{SECRET} crashed</html>"), "Slack refused the message (HTTP 500)."),
            # Following a redirect would turn the POST into a GET somewhere else.
            (Answer(status=302, headers={"Location": "/elsewhere"}), "Slack refused the message (HTTP 302)."),
        ],
    )
    def test_a_refusal_names_the_status(self, peer, answer, expected):
        peer.on("POST", SLACK_PATH, answer)
        outcome = run("send_slack", {"text": "hi"}, self.slack(peer))
        assert_failed(outcome)
        assert outcome.error == expected
        assert [request.path for request in peer.requests] == [SLACK_PATH]

    def test_refuses_a_private_address(self, peer, settings):
        settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
        outcome = run("send_slack", {"text": "hi"}, self.slack(peer))
        assert_failed(outcome, "Could not reach Slack", "private or reserved")
        assert peer.requests == []

    def test_a_slow_webhook_times_out(self, peer, settings):
        settings.TOOL_HTTP_TIMEOUT_SECONDS = SHORT_TIMEOUT_SECONDS
        peer.on("POST", SLACK_PATH, Answer(body="ok", delay=SLOW_ANSWER_SECONDS))
        started = time.monotonic()
        assert_failed(run("send_slack", {"text": "hi"}, self.slack(peer)), "Could not reach Slack")
        assert time.monotonic() - started < SLOW_ANSWER_SECONDS / 2

    def test_a_credential_without_the_url(self):
        outcome = run("send_slack", {"text": "hi"}, credentials_for("slack", {"webhook_url": " "}))
        assert_failed(outcome, "The Slack credential has no 'webhook_url'")

    @pytest.mark.parametrize(
        "arguments", [{}, {"text": ""}, {"text": "x" * 40_001}, {"text": "hi", "channel": "#general"}]
    )
    def test_argument_validation(self, peer, arguments):
        with pytest.raises(ToolArgumentError):
            run("send_slack", arguments, self.slack(peer))


# --- Discord --------------------------------------------------------------------------------------


class TestSendDiscord:
    def discord(self, peer):
        return credentials_for("discord", {"webhook_url": peer.url(DISCORD_PATH)})

    def test_posts_the_content_without_pinging_anyone_by_default(self, peer):
        peer.on("POST", DISCORD_PATH, Answer(status=204))
        outcome = run("send_discord", {"content": "@everyone build passed", "username": "CI"}, self.discord(peer))
        assert outcome.success, outcome.error
        assert outcome.result == {"sent": True, "status": 204}
        assert peer.requests[0].json() == {
            "content": "@everyone build passed",
            "username": "CI",
            "allowed_mentions": {"parse": []},
        }

    def test_mentions_can_be_allowed(self, peer):
        peer.on("POST", DISCORD_PATH, Answer(status=204))
        outcome = run("send_discord", {"content": "x" * 2000, "allow_mentions": True}, self.discord(peer))
        assert outcome.success, outcome.error
        assert peer.requests[0].json() == {"content": "x" * 2000}

    @pytest.mark.parametrize(
        ("answer", "expected"),
        [
            (
                Answer(status=400, json={"message": "Cannot send an empty message", "code": 50006}),
                "Discord refused the message (HTTP 400: Cannot send an empty message).",
            ),
            (Answer(status=404, json={"message": f"Unknown Webhook {SECRET}"}), "HTTP 404: Unknown Webhook [redacted]"),
            (Answer(status=429, json={"retry_after": 1.5}), "rate-limiting this webhook (HTTP 429)"),
            (Answer(status=503, body="down"), "Discord refused the message (HTTP 503)."),
        ],
    )
    def test_refusals(self, peer, answer, expected):
        peer.on("POST", DISCORD_PATH, answer)
        outcome = run("send_discord", {"content": "hi"}, self.discord(peer))
        assert_failed(outcome, expected)

    def test_an_unreachable_webhook(self):
        with HTTPPeer() as gone:
            credentials = credentials_for("discord", {"webhook_url": gone.url(DISCORD_PATH)})
        assert_failed(run("send_discord", {"content": "hi"}, credentials), "Could not reach Discord")

    def test_refuses_a_private_address(self, peer, settings):
        settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
        assert_failed(run("send_discord", {"content": "hi"}, self.discord(peer)), "private or reserved")
        assert peer.requests == []

    @pytest.mark.parametrize(
        "arguments",
        [
            {"content": "x" * 2001},
            {"content": ""},
            {"content": "hi", "username": "u" * 81},
            {"content": "hi", "tts": True},
        ],
    )
    def test_argument_validation(self, peer, arguments):
        with pytest.raises(ToolArgumentError):
            run("send_discord", arguments, self.discord(peer))


# --- Generic webhook ------------------------------------------------------------------------------


class TestSendWebhook:
    def webhook(self, peer, **extra):
        return credentials_for("webhook", {"url": peer.url(HOOK_PATH), **extra})

    def test_posts_event_and_data_with_the_authorization_header(self, peer):
        peer.on("POST", HOOK_PATH, Answer(json={"received": True}))
        credentials = self.webhook(peer, authorization=AUTHORIZATION)

        outcome = run("send_webhook", {"event": "order.created", "data": {"id": 7, "items": [1, 2]}}, credentials)

        assert outcome.success, outcome.error
        assert outcome.result == {"status": 200, "body": '{"received": true}', "truncated": False}
        [request] = peer.requests
        assert request.json() == {"event": "order.created", "data": {"id": 7, "items": [1, 2]}}
        assert request.headers["authorization"] == AUTHORIZATION
        assert request.headers["content-type"] == "application/json"

    def test_posts_a_free_payload_without_authorization(self, peer):
        peer.on("POST", HOOK_PATH, Answer(status=202))
        outcome = run("send_webhook", {"payload": {"anything": ["goes", 1]}}, self.webhook(peer))
        assert outcome.success, outcome.error
        assert outcome.result == {"status": 202, "body": "", "truncated": False}
        assert peer.requests[0].json() == {"anything": ["goes", 1]}
        assert "authorization" not in peer.requests[0].headers

    def test_data_alone(self, peer):
        peer.on("POST", HOOK_PATH, Answer(status=204))
        assert run("send_webhook", {"data": "plain"}, self.webhook(peer)).success
        assert peer.requests[0].json() == {"data": "plain"}

    def test_an_echoed_secret_is_redacted_and_a_long_answer_cut(self, peer):
        token = AUTHORIZATION.removeprefix("Bearer ")
        echo = f"auth={AUTHORIZATION} token={token} url={peer.url(HOOK_PATH)} " + "y" * 5000
        peer.on("POST", HOOK_PATH, Answer(body=echo))
        outcome = run("send_webhook", {"data": 1}, self.webhook(peer, authorization=AUTHORIZATION))
        assert outcome.success, outcome.error
        body = outcome.result["body"]
        assert body.startswith("auth=[redacted] token=[redacted] url=[redacted] yyy")
        assert (len(body), outcome.result["truncated"]) == (2000, True)

    @pytest.mark.parametrize(
        "arguments",
        [{}, {"event": "only.event"}, {"payload": {"a": 1}, "data": 1}, {"payload": {"a": 1}, "event": "e"}],
    )
    def test_payload_or_data(self, peer, arguments):
        outcome = run("send_webhook", arguments, self.webhook(peer))
        assert_failed(outcome, "either 'payload', or 'data'")
        assert peer.requests == []

    def test_an_error_status_fails_with_an_excerpt(self, peer):
        peer.on("POST", HOOK_PATH, Answer(status=500, body=f"failed for token {SECRET}\n\tretry later"))
        outcome = run("send_webhook", {"data": 1}, self.webhook(peer))
        assert_failed(outcome)
        assert outcome.error == "The webhook endpoint answered HTTP 500: failed for token [redacted] retry later"

    def test_refuses_a_private_address(self, peer, settings):
        settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
        outcome = run("send_webhook", {"data": 1}, self.webhook(peer, authorization=AUTHORIZATION))
        assert_failed(outcome, "Could not reach the webhook endpoint", "private or reserved")
        assert peer.requests == []

    def test_argument_validation(self, peer):
        with pytest.raises(ToolArgumentError):
            run("send_webhook", {"payload": [1, 2]}, self.webhook(peer))
        with pytest.raises(ToolArgumentError):
            run("send_webhook", {"data": 1, "headers": {}}, self.webhook(peer))


# --- Email ----------------------------------------------------------------------------------------

PASSWORD = "smtp-pass-4c3b2a"
EMAIL_ARGUMENTS = {
    "to": ["ana@example.com", "bo@example.com"],
    "cc": ["cy@example.com", "ana@example.com"],
    "subject": "Weekly report",
    "body": "Hello,\nthe report is ready.",
    "html": "<p>Hello,<br>the report is <b>ready</b>.</p>",
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    # A name only, no IP: the client dials 127.0.0.1, so a success proves it verified the name it was given.
    return make_tls_files(tmp_path_factory.mktemp("tls"), hostnames=("localhost",), addresses=())


@pytest.fixture
def trusted(settings, tls):
    settings.SMTP_CA_FILE = str(tls.ca_file)
    settings.SMTP_TIMEOUT_SECONDS = 5
    return tls


def email_account(server, **overrides):
    fields = {
        "host": "localhost",
        "port": server.port,
        "security": "starttls",
        "username": "ana",
        "password": PASSWORD,
        "from_address": "reports@example.com",
    }
    fields.update(overrides)
    return credentials_for("email", fields)


def assert_email_failed(outcome, *fragments):
    assert_failed(outcome, *fragments)
    assert PASSWORD not in outcome.error


class TestSendEmail:
    def test_starttls_login_and_delivery(self, trusted):
        with SMTPTestServer(tls=trusted, users={"ana": PASSWORD}) as server:
            outcome = run("send_email", EMAIL_ARGUMENTS, email_account(server))

        assert outcome.success, outcome.error
        assert outcome.result == {"sent": True, "recipients": ["ana@example.com", "bo@example.com", "cy@example.com"]}
        assert server.logins == [("ana", True)]
        [received] = server.messages
        assert received.mail_from == "reports@example.com"
        assert received.rcpt_tos == ["ana@example.com", "bo@example.com", "cy@example.com"]
        message = received.message
        assert (message["From"], message["To"], message["Cc"]) == (
            "reports@example.com",
            "ana@example.com, bo@example.com",
            "cy@example.com",
        )
        assert message["Subject"] == "Weekly report"
        assert message["Message-ID"].endswith("@example.com>")
        assert message.get_body("plain").get_content().strip() == "Hello,\nthe report is ready."
        assert "<b>ready</b>" in message.get_body("html").get_content()

    def test_implicit_tls(self, trusted):
        with SMTPTestServer(tls=trusted, implicit_tls=True, users={"ana": PASSWORD}) as server:
            outcome = run(
                "send_email",
                {"to": ["ana@example.com"], "subject": "s", "body": "b"},
                email_account(server, security="ssl"),
            )
        assert outcome.success, outcome.error
        assert server.logins == [("ana", True)]
        assert len(server.messages) == 1
        assert server.messages[0].message.get_content_type() == "text/plain"

    def test_plain_smtp_without_login(self):
        with SMTPTestServer() as server:
            outcome = run(
                "send_email",
                {"to": ["ana@example.com"], "subject": "s", "body": "b"},
                email_account(server, security="none", username="", password=""),
            )
        assert outcome.success, outcome.error
        assert server.messages[0].rcpt_tos == ["ana@example.com"]

    def test_some_recipients_refused(self, trusted):
        with SMTPTestServer(tls=trusted, users={"ana": PASSWORD}, reject={"bo@example.com"}) as server:
            outcome = run("send_email", EMAIL_ARGUMENTS, email_account(server))
        assert outcome.success, outcome.error
        assert outcome.result == {
            "sent": True,
            "recipients": ["ana@example.com", "cy@example.com"],
            "refused": ["bo@example.com"],
        }

    def test_every_recipient_refused(self, trusted):
        with SMTPTestServer(tls=trusted, users={"ana": PASSWORD}, reject={"ana@example.com"}) as server:
            outcome = run("send_email", {"to": ["ana@example.com"], "subject": "s", "body": "b"}, email_account(server))
        assert_email_failed(outcome, "refused every recipient")
        assert server.messages == []

    def test_wrong_password(self, trusted):
        with SMTPTestServer(tls=trusted, users={"ana": "another-password"}) as server:
            outcome = run("send_email", EMAIL_ARGUMENTS, email_account(server))
        assert_email_failed(outcome, "rejected the username or password")
        # smtplib tries each offered mechanism (PLAIN, then LOGIN) before giving up.
        assert server.logins and set(server.logins) == {("ana", False)}
        assert server.messages == []

    def test_an_untrusted_certificate_is_refused(self, settings, tls):
        settings.SMTP_CA_FILE = ""
        with SMTPTestServer(tls=tls, users={"ana": PASSWORD}) as server:
            outcome = run("send_email", EMAIL_ARGUMENTS, email_account(server))
        assert_email_failed(outcome, "TLS certificate of the mail server could not be verified for localhost")
        assert server.logins == []

    def test_the_certificate_is_checked_against_the_host_name_not_the_dialled_address(self, settings, tmp_path):
        other = make_tls_files(tmp_path, hostnames=("mail.other.test",), addresses=())
        settings.SMTP_CA_FILE = str(other.ca_file)
        with SMTPTestServer(tls=other, implicit_tls=True, users={"ana": PASSWORD}) as server:
            outcome = run("send_email", EMAIL_ARGUMENTS, email_account(server, security="ssl"))
        assert_email_failed(outcome, "could not be verified for localhost")
        assert server.logins == []

    def test_starttls_required_but_not_offered(self):
        with SMTPTestServer(users={"ana": PASSWORD}) as server:
            outcome = run("send_email", EMAIL_ARGUMENTS, email_account(server))
        assert_email_failed(outcome, "does not offer STARTTLS")
        assert server.logins == []

    def test_login_refused_on_an_unencrypted_connection(self):
        # aiosmtpd, like most servers, offers AUTH only once the connection is encrypted.
        with SMTPTestServer(users={"ana": PASSWORD}) as server:
            outcome = run("send_email", EMAIL_ARGUMENTS, email_account(server, security="none"))
        assert_email_failed(outcome, "does not offer login")
        assert server.logins == []

    def test_tls_handshake_against_a_plain_server(self, trusted):
        with SMTPTestServer() as server:
            outcome = run("send_email", EMAIL_ARGUMENTS, email_account(server, security="ssl"))
        assert_email_failed(outcome)
        assert "TLS handshake" in outcome.error or "closed the connection" in outcome.error

    def test_refuses_a_private_address_before_connecting(self, settings, trusted):
        settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
        with SMTPTestServer(tls=trusted, users={"ana": PASSWORD}) as server:
            outcome = run("send_email", EMAIL_ARGUMENTS, email_account(server))
        assert_email_failed(outcome, "The mail server localhost resolves to a private or reserved address")
        assert (server.logins, server.messages) == ([], [])

    def test_an_allowed_network_lifts_the_refusal(self, settings, trusted):
        settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
        settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
        with SMTPTestServer(tls=trusted, users={"ana": PASSWORD}) as server:
            outcome = run("send_email", EMAIL_ARGUMENTS, email_account(server))
        assert outcome.success, outcome.error

    def test_nobody_listening(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        outcome = run(
            "send_email",
            {"to": ["a@example.com"], "subject": "s", "body": "b"},
            credentials_for("email", {"host": "127.0.0.1", "port": port, "from_address": "x@example.com"}),
        )
        assert_email_failed(outcome, f"Could not connect to the mail server 127.0.0.1:{port}")

    def test_a_silent_server_times_out(self, settings):
        settings.SMTP_TIMEOUT_SECONDS = SHORT_TIMEOUT_SECONDS
        with socket.socket() as listener:
            # The kernel completes the handshake; nobody ever sends the greeting.
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            started = time.monotonic()
            outcome = run(
                "send_email",
                {"to": ["a@example.com"], "subject": "s", "body": "b"},
                credentials_for("email", {"host": "127.0.0.1", "port": port, "from_address": "x@example.com"}),
            )
        assert_email_failed(outcome, "did not answer within 0.3 s")
        assert time.monotonic() - started < 2

    @pytest.mark.parametrize(
        ("fields", "fragment"),
        [
            ({"host": ""}, "has no 'host'"),
            ({"host": "mail.example.com/x"}, "not a valid host name"),
            ({"security": "tls1.3"}, "security must be starttls, ssl or none"),
            ({"port": 70000}, "port must be a number"),
            ({"port": "smtp"}, "port must be a number"),
            ({"from_address": "no-at-sign"}, "from_address is not a valid email address"),
        ],
    )
    def test_invalid_credentials(self, fields, fragment):
        base = {"host": "127.0.0.1", "port": 2525, "from_address": "x@example.com"}
        outcome = run("send_email", EMAIL_ARGUMENTS, credentials_for("email", {**base, **fields}))
        assert_email_failed(outcome, fragment)

    @pytest.mark.parametrize(
        "change",
        [
            {"to": []},
            {"to": [f"user{n}@example.com" for n in range(21)]},
            {"to": ["Ana <ana@example.com>"]},
            {"to": ["ana@example.com, eve@example.com"]},
            {"to": ["not-an-address"]},
            {"to": ["ana@example.com", "ana@example.com"]},
            {"subject": "Hello\r\nBcc: eve@example.com"},
            {"subject": ""},
            {"body": ""},
            {"bcc": ["eve@example.com"]},
        ],
    )
    def test_argument_validation(self, change):
        with pytest.raises(ToolArgumentError):
            run("send_email", {**EMAIL_ARGUMENTS, **change}, failing_credentials("unused"))
