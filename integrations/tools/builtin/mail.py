"""`send_email`: send a message through the user's own SMTP server.

SMTP is not HTTP, so the guarded HTTP client cannot carry it; this module applies the same outbound
rules itself (CONTRACT §7): the host is resolved once, every address must pass
`is_address_allowed`, and the socket goes to a checked address while TLS still verifies the
certificate against the host name. Every socket operation has a timeout.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from django.conf import settings

from claraverse.outbound import is_address_allowed, system_resolver
from integrations.tools.builtin.common import credential_value, peer_excerpt
from integrations.tools.registry import Tool, ToolContext, ToolExecutionError

SECURITY_MODES = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
DEFAULT_SMTP_TIMEOUT_SECONDS = 15.0
MAX_RECIPIENTS = 20
MAX_SUBJECT_CHARS = 500
MAX_BODY_CHARS = 200_000
# One mailbox, no display name, no list: a model cannot smuggle extra recipients or headers through it.
EMAIL_PATTERN = r"^[^@\s<>(),;:\"\[\]\\]{1,64}@[^@\s<>(),;:\"\[\]\\]{1,255}$"
# make_msgid() without a domain calls socket.getfqdn(), a reverse DNS lookup that can stall for seconds.
FALLBACK_MESSAGE_ID_DOMAIN = "claraverse.local"


def smtp_timeout() -> float:
    """Seconds each SMTP connect, read or write may take (SMTP_TIMEOUT_SECONDS)."""
    return float(getattr(settings, "SMTP_TIMEOUT_SECONDS", DEFAULT_SMTP_TIMEOUT_SECONDS))


def smtp_tls_context() -> ssl.SSLContext:
    """A verifying TLS client context; SMTP_CA_FILE adds a private CA (e.g. a company or test CA)."""
    return ssl.create_default_context(cafile=getattr(settings, "SMTP_CA_FILE", "") or None)


@dataclass(frozen=True)
class SMTPAccount:
    """Where and how to reach one SMTP server, read from an `email` credential."""

    host: str
    port: int
    security: str
    username: str
    password: str
    from_address: str

    @classmethod
    def from_credential(cls, fields: Mapping[str, Any]) -> SMTPAccount:
        """Validate and normalise a credential's fields; a ToolExecutionError says which one is wrong."""
        host = credential_value(fields, "host", "email").rstrip(".").lower()
        if any(char.isspace() or char in "/@" for char in host):
            raise ToolExecutionError("The email credential's host is not a valid host name.")
        security = str(fields.get("security") or "starttls").strip().lower()
        if security not in SECURITY_MODES:
            raise ToolExecutionError("The email credential's security must be starttls, ssl or none.")
        raw_port = fields.get("port")
        try:
            port = int(raw_port) if raw_port not in (None, "") else DEFAULT_PORTS[security]
        except (TypeError, ValueError):
            port = 0
        if not 0 < port < 65536:
            raise ToolExecutionError("The email credential's port must be a number between 1 and 65535.")
        from_address = credential_value(fields, "from_address", "email")
        if "\r" in from_address or "\n" in from_address or "@" not in from_address:
            raise ToolExecutionError("The email credential's from_address is not a valid email address.")
        username = fields.get("username")
        password = fields.get("password")
        return cls(
            host=host,
            port=port,
            security=security,
            username=username.strip() if isinstance(username, str) else "",
            password=password if isinstance(password, str) else "",
            from_address=from_address,
        )

    @property
    def where(self) -> str:
        """host:port, for messages (neither is secret)."""
        return f"{self.host}:{self.port}"


def _checked_addresses(account: SMTPAccount) -> list[str]:
    try:
        addresses = system_resolver(account.host, account.port)
    except (OSError, UnicodeError):
        raise ToolExecutionError(f"Could not resolve the mail server host {account.host}.")
    if not addresses:
        raise ToolExecutionError(f"Could not resolve the mail server host {account.host}.")
    # Every answer must pass, as for HTTP: the resolver may hand out any of them on the next lookup.
    if not all(is_address_allowed(address) for address in addresses):
        raise ToolExecutionError(
            f"The mail server {account.host} resolves to a private or reserved address, which is not allowed."
        )
    return addresses


def _connect(account: SMTPAccount, addresses: list[str]) -> smtplib.SMTP:
    last_error: OSError | None = None
    for address in addresses:
        options: dict[str, Any] = {"local_hostname": socket.gethostname() or "localhost", "timeout": smtp_timeout()}
        client = (
            smtplib.SMTP_SSL(context=smtp_tls_context(), **options)
            if account.security == "ssl"
            else smtplib.SMTP(**options)
        )
        # connect() is given the checked address, never the name, so no second DNS answer is used; smtplib
        # verifies certificates (implicit TLS and STARTTLS) against `_host`, which must stay the host name.
        client._host = account.host
        try:
            code, message = client.connect(address, account.port)
        except (ssl.SSLError, smtplib.SMTPException):
            client.close()
            raise
        except OSError as exc:
            # Unreachable or refused on this address (e.g. ::1 when the server listens on IPv4 only): try the next.
            client.close()
            last_error = exc
            continue
        if code != 220:
            client.close()
            raise smtplib.SMTPConnectError(code, message)
        return client
    assert last_error is not None
    raise last_error


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {peer_excerpt(text)}".strip()


@contextmanager
def _smtp_errors(account: SMTPAccount) -> Iterator[None]:
    # Everything smtplib and ssl raise becomes one sentence a user can act on; the password never appears.
    try:
        yield
    except ToolExecutionError:
        raise
    except smtplib.SMTPAuthenticationError:
        raise ToolExecutionError("The mail server rejected the username or password.")
    except smtplib.SMTPSenderRefused as exc:
        raise ToolExecutionError(f"The mail server refused the sender address ({_reply(exc)}).")
    except smtplib.SMTPRecipientsRefused:
        raise ToolExecutionError("The mail server refused every recipient.")
    except smtplib.SMTPDataError as exc:
        raise ToolExecutionError(f"The mail server refused the message ({_reply(exc)}).")
    except smtplib.SMTPConnectError as exc:
        raise ToolExecutionError(f"The mail server {account.where} refused the connection ({_reply(exc)}).")
    except smtplib.SMTPServerDisconnected as exc:
        # smtplib reports a read timeout as a disconnection ("Connection unexpectedly closed: timed out").
        if "timed out" in str(exc):
            raise ToolExecutionError(f"The mail server {account.where} did not answer within {smtp_timeout():g} s.")
        raise ToolExecutionError(f"The mail server {account.where} closed the connection unexpectedly.")
    except smtplib.SMTPResponseException as exc:
        raise ToolExecutionError(f"The mail server answered {_reply(exc)}.")
    except smtplib.SMTPNotSupportedError as exc:
        raise ToolExecutionError(f"The mail server does not support what this message needs ({exc}).")
    except smtplib.SMTPException:
        raise ToolExecutionError(f"The conversation with the mail server {account.where} failed.")
    except ssl.SSLCertVerificationError:
        raise ToolExecutionError(f"The TLS certificate of the mail server could not be verified for {account.host}.")
    except ssl.SSLError:
        raise ToolExecutionError(
            f"The TLS handshake with the mail server {account.where} failed; check the security setting for this port."
        )
    except TimeoutError:
        raise ToolExecutionError(f"The mail server {account.where} did not answer within {smtp_timeout():g} s.")
    except OSError:
        raise ToolExecutionError(f"Could not connect to the mail server {account.where}.")
    except UnicodeError:
        raise ToolExecutionError("The username or password contains characters the SMTP login cannot send.")


def _secure_and_login(client: smtplib.SMTP, account: SMTPAccount) -> None:
    client.ehlo()
    if account.security == "starttls":
        if not client.has_extn("starttls"):
            raise ToolExecutionError(
                f"The mail server {account.where} does not offer STARTTLS; use security 'ssl' or another port."
            )
        client.starttls(context=smtp_tls_context())
        client.ehlo()
    if account.username:
        if not client.has_extn("auth"):
            raise ToolExecutionError(
                "The mail server does not offer login on this connection; it may need security 'starttls' or 'ssl'."
            )
        client.login(account.username, account.password)


@contextmanager
def smtp_session(account: SMTPAccount) -> Iterator[smtplib.SMTP]:
    """A connected, secured (per `account.security`) and logged-in SMTP client; failures are ToolExecutionErrors."""
    addresses = _checked_addresses(account)
    with _smtp_errors(account):
        client = _connect(account, addresses)
        try:
            _secure_and_login(client, account)
            yield client
        except BaseException:
            client.close()
            raise
        else:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()  # the work is done; a server that hangs up before QUIT's answer changes nothing


def build_message(
    *, from_address: str, to: list[str], cc: list[str], subject: str, body: str, html: str | None
) -> EmailMessage:
    """A plain-text message, with an HTML alternative when `html` is given."""
    message = EmailMessage()
    try:
        message["From"] = from_address
        message["To"] = ", ".join(to)
        if cc:
            message["Cc"] = ", ".join(cc)
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        domain = from_address.rpartition("@")[2].strip() or FALLBACK_MESSAGE_ID_DOMAIN
        message["Message-ID"] = make_msgid(domain=domain)
        message.set_content(body)
        if html:
            message.add_alternative(html, subtype="html")
    except (ValueError, TypeError) as exc:
        raise ToolExecutionError(f"The message could not be built: {peer_excerpt(str(exc))}")
    return message


def _execute(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    account = SMTPAccount.from_credential(context.credential_fields("email"))
    to = list(dict.fromkeys(arguments["to"]))
    cc = [address for address in dict.fromkeys(arguments.get("cc") or []) if address not in to]
    message = build_message(
        from_address=account.from_address,
        to=to,
        cc=cc,
        subject=arguments["subject"],
        body=arguments["body"],
        html=arguments.get("html"),
    )
    recipients = to + cc
    with smtp_session(account) as client:
        refused = client.send_message(message, from_addr=account.from_address, to_addrs=recipients)
    result: dict[str, Any] = {"sent": True, "recipients": [address for address in recipients if address not in refused]}
    if refused:
        result["refused"] = sorted(refused)
    return result


_ADDRESS_LIST = {
    "type": "array",
    "items": {"type": "string", "format": "email", "pattern": EMAIL_PATTERN, "maxLength": 320},
    "maxItems": MAX_RECIPIENTS,
    "uniqueItems": True,
}

SEND_EMAIL = Tool(
    name="send_email",
    display_name="Send Email",
    description=(
        "Send an email through the user's SMTP server: plain-text body, optionally with an HTML version, to up to "
        f"{MAX_RECIPIENTS} recipients plus up to {MAX_RECIPIENTS} in cc. Addresses are plain, like "
        "'ana@example.com' (no display names)."
    ),
    category="communication",
    icon="Mail",
    parameters={
        "type": "object",
        "properties": {
            "to": {**_ADDRESS_LIST, "minItems": 1, "description": "The recipients' email addresses."},
            "cc": {**_ADDRESS_LIST, "description": "Optional addresses to copy."},
            "subject": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_SUBJECT_CHARS,
                "pattern": "^[^\\r\\n]*$",
                "description": "The subject line (one line).",
            },
            "body": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_BODY_CHARS,
                "description": "The message as plain text.",
            },
            "html": {
                "type": "string",
                "maxLength": MAX_BODY_CHARS,
                "description": "Optional HTML version of the message, shown by mail clients that display HTML.",
            },
        },
        "required": ["to", "subject", "body"],
        "additionalProperties": False,
    },
    execute=_execute,
    requires_integration="email",
    keywords=("email", "mail", "smtp", "send", "message", "inbox", "notify", "newsletter", "reply", "letter"),
)
