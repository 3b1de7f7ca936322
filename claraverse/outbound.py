"""The one guarded outbound HTTP client (CONTRACT §7).

Every request to a URL that a user, an admin or a remote server chose goes through here:

- only `http` and `https`, no credentials in the URL;
- the host is resolved once per hop and every address must be public, unless
  `OUTBOUND_ALLOW_PRIVATE_NETWORKS`, `OUTBOUND_ALLOWED_NETWORKS` or the caller's `allow_private` say otherwise;
- the socket goes to the address that was checked (TLS still verifies the hostname), so a DNS answer
  that changes between check and connect cannot redirect us;
- redirects are followed by hand, each hop checked again;
- connect and read timeouts, an overall deadline enforced by a watchdog, and a response size cap;
- no environment proxies, no cookie jar, no netrc: nothing outside the call decides where it goes.
"""

from __future__ import annotations

import codecs
import contextvars
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri, rewind_body
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, DecodeError, MaxRetryError, ReadTimeoutError
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from claraverse.errors import ApplicationError

__all__ = [
    "DestinationNotAllowed",
    "InvalidOutboundRequest",
    "OutboundAborted",
    "OutboundConnectionError",
    "OutboundError",
    "OutboundResponse",
    "OutboundStream",
    "OutboundTimeout",
    "ResponseTooLarge",
    "as_application_error",
    "is_address_allowed",
    "outbound_request",
    "outbound_stream",
    "system_resolver",
    "validate_url",
]

logger = logging.getLogger("claraverse.outbound")

ALLOWED_SCHEMES = frozenset({"http", "https"})
ALLOWED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}
# A generation streamed by an LLM can legitimately run for minutes; the read timeout still bounds every silence.
DEFAULT_STREAM_TOTAL_TIMEOUT_SECONDS = 600.0
USER_AGENT = "ClaraVerse"
READ_CHUNK_BYTES = 64 * 1024
# Credentials that must not follow a redirect to another origin.
CREDENTIAL_HEADERS = ("Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key", "Api-Key")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]
Timeout = float | tuple[float, float]


# --- Errors ---------------------------------------------------------------------------------------


class OutboundError(Exception):
    """Base of every failure of a guarded outbound request; `message` is safe to show to a user."""

    default_message = "The outbound request failed."

    def __init__(self, message: str | None = None):
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidOutboundRequest(OutboundError):
    """The request as given cannot be sent (malformed URL, method, header or body)."""

    default_message = "The outbound request is invalid."


class DestinationNotAllowed(InvalidOutboundRequest):
    """The destination is refused: scheme, credentials in the URL, non-public address, too many redirects."""

    default_message = "The destination is not allowed."


class OutboundTimeout(OutboundError):
    """The destination did not connect, answer or finish in time."""

    default_message = "The outbound request timed out."


class ResponseTooLarge(OutboundError):
    """The response body is larger than the cap for this call."""

    def __init__(self, max_bytes: int, message: str | None = None):
        self.max_bytes = max_bytes
        super().__init__(message or f"The response is larger than the limit of {max_bytes} bytes.")


class OutboundConnectionError(OutboundError):
    """The destination could not be resolved or reached, TLS verification failed, or the connection broke."""

    default_message = "Could not connect to the destination."


class OutboundAborted(OutboundError):
    """The caller aborted the call (OutboundStream.abort), e.g. because a user pressed stop."""

    default_message = "The outbound request was aborted."


def as_application_error(exc: OutboundError, *, field: str | None = None) -> ApplicationError:
    """Map an outbound failure to the API envelope: refusals are 400 VALIDATION_ERROR, the rest 502 PROVIDER_ERROR."""
    if isinstance(exc, InvalidOutboundRequest):
        details = {field: [exc.message]} if field else {}
        return ApplicationError("VALIDATION_ERROR", exc.message, 400, details)
    details = {"max_bytes": exc.max_bytes} if isinstance(exc, ResponseTooLarge) else {}
    return ApplicationError("PROVIDER_ERROR", exc.message, 502, details)


# --- Address policy -------------------------------------------------------------------------------

# Ranges that `ipaddress` (3.11) still calls global or does not flag consistently across patch releases.
_REFUSED_NETWORKS = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT (shared address space)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/8",  # unspecified, loopback, IPv4-compatible and other reserved forms
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",
        "2001::/23",  # IETF protocol assignments, including Teredo
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # These forms deliver to an IPv4 host, so that host is what must be public.
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return _is_public(embedded)
        if ip.teredo is not None or ip.is_site_local:
            return False
    if ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return False
    if any(ip in network for network in _REFUSED_NETWORKS):
        return False
    return ip.is_global


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for cidr in settings.OUTBOUND_ALLOWED_NETWORKS:
        try:
            networks.append(ipaddress.ip_network(str(cidr).strip(), strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(f"OUTBOUND_ALLOWED_NETWORKS has an invalid network: {cidr!r}") from exc
    return networks


def _private_allowed(allow_private: bool | None) -> bool:
    return bool(settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS) if allow_private is None else allow_private


def is_address_allowed(address: str | IPAddress, *, allow_private: bool | None = None) -> bool:
    """Whether the client may connect to `address` under the settings and the caller's `allow_private`."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if _private_allowed(allow_private):
        return True
    if any(ip in network for network in _allowed_networks()):
        return True
    return _is_public(ip)


# --- URLs and resolution --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    scheme: str
    hostname: str  # lower case, IPv6 without brackets
    port: int
    host_header: str  # host[:port] as the origin server expects it


def _parse_target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DestinationNotAllowed("The URL is malformed.")
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise DestinationNotAllowed("Only http and https URLs are allowed.")
    if "@" in parts.netloc:
        raise DestinationNotAllowed("URLs with credentials in them are not allowed; send them in a header.")
    hostname = parts.hostname
    if not hostname:
        raise DestinationNotAllowed("The URL has no host.")
    port = port if port is not None else DEFAULT_PORTS[scheme]
    host_header = f"[{hostname}]" if ":" in hostname else hostname
    if port != DEFAULT_PORTS[scheme]:
        host_header = f"{host_header}:{port}"
    return _Target(scheme=scheme, hostname=hostname, port=port, host_header=host_header)


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve `host` with the operating system's resolver (socket.getaddrinfo), addresses in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _ip_literal(hostname: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(hostname)
    except ValueError:
        return None


def _checked_addresses(target: _Target, allow_private: bool | None, resolver: Resolver) -> list[str]:
    literal = _ip_literal(target.hostname)
    if literal is not None:
        answers: list[Any] = [literal]
    else:
        try:
            answers = list(resolver(target.hostname, target.port))
        except (OSError, UnicodeError):
            raise OutboundConnectionError(f"Could not resolve the host {target.hostname}.")
    if not answers:
        raise OutboundConnectionError(f"Could not resolve the host {target.hostname}.")
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            ip = ipaddress.ip_address(str(answer))
        except ValueError:
            raise OutboundConnectionError(f"Could not resolve the host {target.hostname}.")
        # Mapped addresses are connected to as plain IPv4, which needs no dual-stack socket.
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        addresses.append(ip)
    # Every answer must pass: a resolver may hand out any of them, and an attacker controls the order.
    for ip in addresses:
        if not is_address_allowed(ip, allow_private=allow_private):
            # The address goes to the log only: telling a user what an internal name resolves to leaks the network.
            logger.info("outbound refused %s: resolves to non-public address %s", target.host_header, ip)
            if literal is not None:
                raise DestinationNotAllowed(f"The address {target.hostname} is private or reserved and not allowed.")
            raise DestinationNotAllowed(
                f"The host {target.hostname} resolves to a private or reserved address, which is not allowed."
            )
    return list(dict.fromkeys(str(ip) for ip in addresses))


def validate_url(url: str, *, allow_private: bool | None = None, resolver: Resolver | None = None) -> None:
    """Check `url` as a request would (scheme, credentials, every resolved address) without connecting."""
    _checked_addresses(_parse_target(url), allow_private, resolver or system_resolver)


# --- Deadline watchdog and pinned connections -----------------------------------------------------


class _Deadline:
    """The overall time budget of one call; when it runs out, the call's sockets are shut down.

    Socket timeouts only bound each single wait, so a server dripping a byte at a time would never
    trip them. Shutting the sockets down from a timer thread wakes any blocked read at once.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._finished = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.0, self.expires_at - time.monotonic())

    def is_over(self) -> bool:
        return self.expired or time.monotonic() >= self.expires_at

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                _shutdown(sock)
            elif not self._finished:
                self._sockets.append(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def abort(self) -> None:
        """Shut every socket of the call down now, whichever thread is blocked reading it."""
        with self._lock:
            if not self._finished:
                for sock in self._sockets:
                    _shutdown(sock)

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            self._timer.cancel()
            self._sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    # Already closed by urllib3 is fine: then nothing is blocked on it.
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


# Connections are created deep inside urllib3; this is how they find the deadline of the call that opened them.
_active_deadline: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar("outbound_deadline", default=None)


def _track_socket(sock: socket.socket | None) -> None:
    deadline = _active_deadline.get()
    if deadline is not None and sock is not None:
        deadline.track(sock)


class _DeadlineTrackingMixin:
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _track_socket(sock)
        return sock

    def connect(self) -> None:
        super().connect()
        # TLS wraps (and detaches) the raw socket, so the wrapped one is what a watchdog can still shut down.
        _track_socket(getattr(self, "sock", None))


class _GuardedHTTPConnection(_DeadlineTrackingMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_DeadlineTrackingMixin, HTTPSConnection):
    pass


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _PinnedAdapter(HTTPAdapter):
    """Opens connections to the address checked for the current hop, never to a fresh DNS answer."""

    def __init__(self) -> None:
        self._pin: tuple[_Target, str] | None = None
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPConnectionPool,
            "https": _GuardedHTTPSConnectionPool,
        }

    def pin(self, target: _Target, address: str) -> None:
        self._pin = (target, address)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        target = _parse_target(request.url or "")
        if self._pin is None or self._pin[0] != target:
            # Only reachable through a bug in this module, but it is the last line before a socket opens.
            raise DestinationNotAllowed("The destination was not checked before connecting.")
        _, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        if target.scheme == "https":
            # SNI and certificate verification use the real hostname, exactly as an unpinned request would.
            pool_kwargs["server_hostname"] = target.hostname
        return self.poolmanager.connection_from_host(
            host=self._pin[1], port=target.port, scheme=target.scheme, pool_kwargs=pool_kwargs
        )

    def add_headers(self, request, **kwargs: Any) -> None:
        # Without it http.client would send the pinned IP as Host; a caller's own Host is not honoured either.
        request.headers["Host"] = _parse_target(request.url or "").host_header


# --- The call -------------------------------------------------------------------------------------


def _timeouts(timeout: Timeout | None) -> tuple[float, float]:
    if timeout is None:
        return float(settings.OUTBOUND_CONNECT_TIMEOUT_SECONDS), float(settings.OUTBOUND_READ_TIMEOUT_SECONDS)
    if isinstance(timeout, tuple):
        connect, read = timeout
        return float(connect), float(read)
    return float(timeout), float(timeout)


def _max_bytes(max_bytes: int | None) -> int:
    return int(settings.OUTBOUND_MAX_RESPONSE_BYTES) if max_bytes is None else int(max_bytes)


def _redirect_location(response: requests.Response) -> str:
    location = response.headers["Location"]
    # http.client decodes headers as latin-1; servers that send non-ASCII locations send UTF-8.
    try:
        return location.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return location


def _origin(target: _Target) -> tuple[str, str, int]:
    return target.scheme, target.hostname, target.port


class _Exchange:
    """One guarded call: request preparation, the hop loop with its checks, the deadline and clean-up."""

    def __init__(
        self,
        method: str,
        url: str,
        *,
        timeout: Timeout | None,
        total_timeout: float | None,
        default_total_timeout: float | None,
        allow_redirects: bool,
        allow_private: bool | None,
        resolver: Resolver | None,
        verify: bool | str,
    ):
        self.method = str(method).upper()
        self.url = url
        self.connect_timeout, self.read_timeout = _timeouts(timeout)
        if total_timeout is None:
            total_timeout = default_total_timeout or self.connect_timeout + self.read_timeout
        self.total_timeout = float(total_timeout)
        self.allow_redirects = allow_redirects
        self.allow_private = allow_private
        self.resolver = resolver or system_resolver
        self.verify = verify
        self.started = time.monotonic()
        self.host = "-"
        self.redirects = 0
        self.deadline: _Deadline | None = None
        # Set from another thread by OutboundStream.abort; a plain bool is enough, it only ever goes True.
        self.aborted = False
        self.adapter = _PinnedAdapter()
        self.response: requests.Response | None = None

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def open(self, *, headers, params, json_body, data, files) -> requests.Response:
        """Send the request, following and re-checking redirects; the body of the final response is unread."""
        if self.method not in ALLOWED_METHODS:
            raise InvalidOutboundRequest(f"The HTTP method {self.method[:16]!r} is not supported.")
        self.host = _parse_target(self.url).host_header
        prepared = self._prepare(headers=headers, params=params, json_body=json_body, data=data, files=files)
        self.deadline = _Deadline(self.total_timeout)
        max_redirects = int(settings.OUTBOUND_MAX_REDIRECTS)
        while True:
            response = self._send_hop(prepared)
            self.response = response
            if not (self.allow_redirects and response.is_redirect):
                return response
            if self.redirects >= max_redirects:
                raise DestinationNotAllowed(f"Too many redirects (more than {max_redirects}).")
            self.redirects += 1
            prepared = self._next_hop(prepared, response)
            response.close()

    def _prepare(self, *, headers, params, json_body, data, files) -> requests.PreparedRequest:
        merged = CaseInsensitiveDict({"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "gzip, deflate"})
        merged.update({name: value for name, value in (headers or {}).items() if value is not None})
        request = requests.Request(
            method=self.method, url=self.url, headers=merged, params=params, json=json_body, data=data, files=files
        )
        try:
            return request.prepare()
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
            raise DestinationNotAllowed("The URL is malformed.")
        except requests.exceptions.InvalidHeader:
            raise InvalidOutboundRequest("A request header has an invalid name or value.")
        except requests.exceptions.InvalidJSONError:
            raise InvalidOutboundRequest("The JSON body cannot be encoded.")

    def _send_hop(self, prepared: requests.PreparedRequest) -> requests.Response:
        assert self.deadline is not None
        target = _parse_target(prepared.url or "")
        self.host = target.host_header
        addresses = _checked_addresses(target, self.allow_private, self.resolver)
        for index, address in enumerate(addresses):
            if self.deadline.is_over():
                raise self._deadline_error()
            self.adapter.pin(target, address)
            remaining = self.deadline.remaining()
            timeout = (min(self.connect_timeout, remaining), min(self.read_timeout, remaining))
            token = _active_deadline.set(self.deadline)
            try:
                return self.adapter.send(prepared, stream=True, timeout=timeout, verify=self.verify, proxies={})
            except requests.exceptions.ConnectionError as exc:
                # Like urllib3 would with its own DNS answer, try the next checked address if this one is unreachable
                # (nothing of the body has been sent when the connection could not even be opened).
                if _failed_to_connect(exc) and index + 1 < len(addresses) and not self.deadline.is_over():
                    continue
                raise self._translate(exc)
            except (requests.exceptions.RequestException, Urllib3HTTPError, OSError) as exc:
                raise self._translate(exc)
            finally:
                _active_deadline.reset(token)
        raise OutboundConnectionError(f"Could not connect to {self.host}.")  # pragma: no cover (loop returns)

    def _next_hop(self, prepared: requests.PreparedRequest, response: requests.Response) -> requests.PreparedRequest:
        try:
            next_url = requote_uri(urljoin(response.url or prepared.url or "", _redirect_location(response)))
        except (requests.exceptions.RequestException, ValueError):
            raise DestinationNotAllowed("The redirect location is malformed.")
        old_target, new_target = _parse_target(prepared.url or ""), _parse_target(next_url)
        following = prepared.copy()
        try:
            following.prepare_url(next_url, None)
        except (requests.exceptions.RequestException, ValueError):
            raise DestinationNotAllowed("The redirect location is malformed.")
        status = response.status_code
        # Same rules as browsers and requests: 303 (and 301/302 after POST) turn into GET; 307/308 replay the body.
        if (status == 303 and following.method != "HEAD") or (status in (301, 302) and following.method == "POST"):
            following.method = "GET"
        if status not in (307, 308):
            for name in ("Content-Length", "Content-Type", "Transfer-Encoding"):
                following.headers.pop(name, None)
            following.body = None
        elif following.body is not None and getattr(following, "_body_position", None) is not None:
            try:
                rewind_body(following)
            except requests.exceptions.RequestException:
                raise InvalidOutboundRequest("The request body cannot be sent again for the redirect.")
        if _origin(old_target) != _origin(new_target):
            for name in CREDENTIAL_HEADERS:
                following.headers.pop(name, None)
        return following

    def _deadline_error(self) -> OutboundTimeout:
        return OutboundTimeout(f"The request to {self.host} did not complete within {self.total_timeout:g} s.")

    def _translate(self, exc: BaseException, *, reading: bool = False) -> OutboundError:
        if self.aborted:
            return OutboundAborted()
        if self.deadline is not None and self.deadline.is_over():
            return self._deadline_error()
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return OutboundTimeout(f"Connecting to {self.host} timed out.")
        if isinstance(exc, requests.exceptions.ReadTimeout | ReadTimeoutError):
            return OutboundTimeout(f"{self.host} did not answer within {self.read_timeout:g} s.")
        if isinstance(exc, requests.exceptions.SSLError):
            return OutboundConnectionError(f"The TLS connection to {self.host} failed (handshake or certificate).")
        if isinstance(exc, requests.exceptions.InvalidURL):
            return DestinationNotAllowed("The URL is malformed.")
        if isinstance(exc, DecodeError | requests.exceptions.ContentDecodingError):
            return OutboundConnectionError(f"The response from {self.host} could not be decoded.")
        if reading:
            return OutboundConnectionError(f"The connection to {self.host} broke while reading the response.")
        if isinstance(exc, requests.exceptions.ConnectionError) and not _failed_to_connect(exc):
            return OutboundConnectionError(f"The connection to {self.host} broke before an answer arrived.")
        return OutboundConnectionError(f"Could not connect to {self.host}.")

    def read_error(self, exc: BaseException) -> OutboundError:
        """Translate a failure while reading the body."""
        return self._translate(exc, reading=True)

    def check_deadline(self) -> None:
        """Raise if the call was aborted or is past its deadline (a shut-down socket reads as a clean end of body)."""
        if self.aborted:
            raise OutboundAborted()
        if self.deadline is not None and self.deadline.is_over():
            raise self._deadline_error()

    def close(self) -> None:
        """Stop the watchdog and release every connection of the call."""
        if self.deadline is not None:
            self.deadline.finish()
        if self.response is not None:
            self.response.close()
        self.adapter.close()

    def log_success(self, status: int, received: int, *, streamed: bool = False) -> None:
        """One INFO line per call; never the path, query string or headers, which can hold secrets."""
        logger.info(
            "outbound %s%s %s -> %s (%d bytes, %d redirects, %d ms)",
            "stream " if streamed else "",
            self.method,
            self.host,
            status,
            received,
            self.redirects,
            self.elapsed_ms(),
        )

    def log_failure(self, exc: OutboundError) -> None:
        """One WARNING line per failed call (INFO when the caller aborted it), with the error's class and message."""
        logger.log(
            logging.INFO if isinstance(exc, OutboundAborted) else logging.WARNING,
            "outbound %s %s failed: %s: %s (%d ms)",
            self.method,
            self.host,
            type(exc).__name__,
            exc.message,
            self.elapsed_ms(),
        )


def _failed_to_connect(exc: requests.exceptions.ConnectionError) -> bool:
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    # NewConnectionError (refused, unreachable) subclasses ConnectTimeoutError in urllib3 2.
    return isinstance(reason, ConnectTimeoutError)


class _BodyReader:
    """Reads the final response body in small pieces, enforcing the size cap and the deadline."""

    def __init__(self, exchange: _Exchange, response: requests.Response, max_bytes: int):
        self.exchange = exchange
        self.raw = response.raw
        self.max_bytes = max_bytes
        self.received = 0
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > max_bytes:
            raise ResponseTooLarge(max_bytes)

    def read_chunk(self, size: int = READ_CHUNK_BYTES) -> bytes:
        """The next decoded piece of the body (as soon as any arrives), or b"" at its end."""
        try:
            # read1 returns whatever arrived instead of waiting for `size` bytes, which SSE needs.
            chunk = self.raw.read1(size, decode_content=True) or b""
        except (Urllib3HTTPError, requests.exceptions.RequestException, OSError) as exc:
            raise self.exchange.read_error(exc)
        self.exchange.check_deadline()
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise ResponseTooLarge(self.max_bytes)
        return chunk

    def read_all(self) -> bytes:
        """The whole remaining body."""
        chunks = []
        while chunk := self.read_chunk():
            chunks.append(chunk)
        return b"".join(chunks)


# --- Public API -----------------------------------------------------------------------------------


def _charset(headers: Mapping[str, str]) -> str:
    for parameter in headers.get("Content-Type", "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            candidate = value.strip().strip("'\"")
            try:
                codecs.lookup(candidate)
            except LookupError:
                break
            return candidate
    return "utf-8"


@dataclass(frozen=True)
class OutboundResponse:
    """A fully read response of a guarded outbound request (any status; callers decide what non-2xx means)."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes
    url: str  # final URL after redirects
    elapsed_ms: int

    @property
    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        """The body decoded with the charset the server declared, else UTF-8 (undecodable bytes replaced)."""
        return self.content.decode(_charset(self.headers), errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError if it is not JSON."""
        return json.loads(self.content)


_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


class OutboundStream:
    """An open streamed response; read it inside the `with` block through iter_bytes(), iter_lines() or read()."""

    def __init__(self, response: requests.Response, reader: _BodyReader):
        self.status_code: int = response.status_code
        self.headers: Mapping[str, str] = CaseInsensitiveDict(response.headers)
        self.url: str = response.url
        self._reader = reader

    @property
    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status_code < 300

    @property
    def bytes_received(self) -> int:
        """Decoded body bytes read so far (what the size cap counts)."""
        return self._reader.received

    def iter_bytes(self, chunk_size: int = READ_CHUNK_BYTES) -> Iterator[bytes]:
        """Body pieces as they arrive, at most `chunk_size` bytes each."""
        while chunk := self._reader.read_chunk(chunk_size):
            yield chunk

    def iter_lines(self) -> Iterator[str]:
        """Body lines as they arrive, split on CRLF, LF or CR (as SSE requires), UTF-8 decoded, without breaks."""
        buffer = bytearray()
        for chunk in self.iter_bytes():
            # Only the new bytes (and a CR that may pair with an LF in them) can hold a break not yet seen.
            search_from = max(0, len(buffer) - 1)
            buffer += chunk
            yield from _pop_lines(buffer, search_from, final=False)
        yield from _pop_lines(buffer, 0, final=True)

    def read(self) -> bytes:
        """The rest of the body (e.g. an error answer), under the same cap and deadline."""
        return self._reader.read_all()

    def abort(self) -> None:
        """Abort the call from any thread: its sockets are shut down, so a blocked read returns at once.

        From then on reading raises OutboundAborted (also for data already buffered). Harmless once the call ended.
        """
        exchange = self._reader.exchange
        exchange.aborted = True
        if exchange.deadline is not None:
            exchange.deadline.abort()


def _pop_lines(buffer: bytearray, search_from: int, *, final: bool) -> Iterator[str]:
    start = 0
    while match := _LINE_BREAK.search(buffer, max(start, search_from)):
        if match.group() == b"\r" and match.end() == len(buffer) and not final:
            break  # the LF of a CRLF may still be on its way
        yield buffer[start : match.start()].decode("utf-8", errors="replace")
        start = match.end()
    if final and start < len(buffer):
        yield buffer[start:].decode("utf-8", errors="replace")
        start = len(buffer)
    del buffer[:start]


def outbound_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Any = None,
    json: Any = None,
    data: Any = None,
    files: Any = None,
    timeout: Timeout | None = None,
    total_timeout: float | None = None,
    max_bytes: int | None = None,
    allow_redirects: bool = True,
    allow_private: bool | None = None,
    resolver: Resolver | None = None,
    verify: bool | str = True,
) -> OutboundResponse:
    """Send one guarded HTTP request and read the whole response (see the module docstring for the rules).

    `timeout` is seconds or `(connect, read)`, defaulting to the settings; `total_timeout` bounds the whole call
    including redirects and the body (default: connect + read). `max_bytes` caps the decoded body (default
    OUTBOUND_MAX_RESPONSE_BYTES). `allow_private` overrides OUTBOUND_ALLOW_PRIVATE_NETWORKS for destinations
    an admin configured. `resolver(host, port)` returns IP strings (default: system_resolver). `verify` is
    requests' TLS setting: True, or a CA bundle path for a private CA.
    """
    exchange = _Exchange(
        method,
        url,
        timeout=timeout,
        total_timeout=total_timeout,
        default_total_timeout=None,
        allow_redirects=allow_redirects,
        allow_private=allow_private,
        resolver=resolver,
        verify=verify,
    )
    try:
        response = exchange.open(headers=headers, params=params, json_body=json, data=data, files=files)
        reader = _BodyReader(exchange, response, _max_bytes(max_bytes))
        content = reader.read_all()
        exchange.log_success(response.status_code, len(content))
        return OutboundResponse(
            status_code=response.status_code,
            headers=CaseInsensitiveDict(response.headers),
            content=content,
            url=response.url,
            elapsed_ms=exchange.elapsed_ms(),
        )
    except OutboundError as exc:
        exchange.log_failure(exc)
        raise
    finally:
        exchange.close()


@contextmanager
def outbound_stream(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Any = None,
    json: Any = None,
    data: Any = None,
    files: Any = None,
    timeout: Timeout | None = None,
    total_timeout: float | None = None,
    max_bytes: int | None = None,
    allow_redirects: bool = True,
    allow_private: bool | None = None,
    resolver: Resolver | None = None,
    verify: bool | str = True,
) -> Iterator[OutboundStream]:
    """Open one guarded HTTP request and yield its response unread, for streaming (e.g. SSE from an LLM).

    Same rules and arguments as outbound_request, except that `total_timeout` defaults to
    DEFAULT_STREAM_TOTAL_TIMEOUT_SECONDS (the read timeout still bounds each silence) and `max_bytes`
    (default OUTBOUND_MAX_RESPONSE_BYTES) caps everything read from the stream. Reading raises OutboundError.
    """
    exchange = _Exchange(
        method,
        url,
        timeout=timeout,
        total_timeout=total_timeout,
        default_total_timeout=DEFAULT_STREAM_TOTAL_TIMEOUT_SECONDS,
        allow_redirects=allow_redirects,
        allow_private=allow_private,
        resolver=resolver,
        verify=verify,
    )
    failed = False
    stream: OutboundStream | None = None
    try:
        response = exchange.open(headers=headers, params=params, json_body=json, data=data, files=files)
        stream = OutboundStream(response, _BodyReader(exchange, response, _max_bytes(max_bytes)))
        yield stream
    except OutboundError as exc:
        failed = True
        exchange.log_failure(exc)
        raise
    finally:
        if not failed and stream is not None:
            exchange.log_success(stream.status_code, stream.bytes_received, streamed=True)
        exchange.close()
