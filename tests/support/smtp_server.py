"""A real SMTP server on loopback (aiosmtpd) that records what it receives, with optional TLS and AUTH.

    tls = make_tls_files(tmp_path)  # a throw-away CA and a certificate for localhost / 127.0.0.1
    with SMTPTestServer(tls=tls, users={"ana": "secret"}) as server:  # STARTTLS required before AUTH
        ...  # send to server.host:server.port with SMTP_CA_FILE = tls.ca_file
        server.messages[0].message["Subject"]

`implicit_tls=True` serves TLS from the first byte (port-465 style) instead of STARTTLS; `tls=None`
serves plain SMTP. Recipients listed in `reject` are refused with 550.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a test CA and of a server certificate it signed."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side TLS context presenting the certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls_files(
    directory: Path, hostnames: Iterable[str] = ("localhost",), addresses: Iterable[str] = ("127.0.0.1",)
) -> TLSFiles:
    """Create a CA and a server certificate for `hostnames` and `addresses` under `directory`."""
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("ClaraVerse Test CA"))
        .issuer_name(_name("ClaraVerse Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in hostnames]
    alternative_names += [x509.IPAddress(ipaddress.ip_address(address)) for address in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(next(iter(hostnames), "localhost")))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    directory.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the server received it: envelope and parsed content."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage


@dataclass
class _Recorder:
    reject: frozenset[str]
    messages: list[ReceivedMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.reject:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = bytes(envelope.original_content or envelope.content)
        # SMTP carries CRLF line ends; Python's parser keeps them, so text parts would end lines with "\r\n".
        parsed = message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default)
        with self.lock:
            self.messages.append(ReceivedMessage(envelope.mail_from, list(envelope.rcpt_tos), raw, parsed))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    # aiosmtpd's controller must know its port before it listens, so it cannot bind port 0 itself.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SMTPTestServer:
    """An aiosmtpd server on 127.0.0.1 in a background thread; a context manager."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        tls: TLSFiles | None = None,
        implicit_tls: bool = False,
        users: dict[str, str] | None = None,
        auth_require_tls: bool = True,
        reject: Iterable[str] = (),
    ):
        self.users = dict(users or {})
        self.logins: list[tuple[str, bool]] = []  # (login name, accepted)
        self._recorder = _Recorder(frozenset(reject))
        options: dict = {"server_hostname": "mail.test", "auth_require_tls": auth_require_tls}
        if self.users:
            options["authenticator"] = self._authenticate
        if tls is not None and implicit_tls:
            options["ssl_context"] = tls.server_context()
            # aiosmtpd only counts STARTTLS as TLS when deciding to offer AUTH; here every byte is encrypted.
            options["auth_require_tls"] = False
        elif tls is not None:
            options["tls_context"] = tls.server_context()
            options["require_starttls"] = True
        self.port = _free_port()
        self._controller = Controller(self._recorder, hostname=self.host, port=self.port, **options)

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Messages received so far."""
        with self._recorder.lock:
            return list(self._recorder.messages)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        accepted = self.users.get(login) == auth_data.password.decode("utf-8", "replace")
        self.logins.append((login, accepted))
        return AuthResult(success=accepted, handled=False)

    def start(self) -> SMTPTestServer:
        """Start serving."""
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._controller.stop()

    def __enter__(self) -> SMTPTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
