"""Account writes: registration, login, token rotation and revocation, profile updates."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import update_last_login
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenBackendError
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from claraverse.errors import ApplicationError
from claraverse.websocket import close_user_sockets

from .models import User, normalize_email

INVALID_REFRESH_MESSAGE = "Refresh token is invalid, expired or revoked."


@dataclass(frozen=True)
class TokenPair:
    """A fresh access and refresh token for one user."""

    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class AuthResult:
    """A user together with the tokens just issued to them."""

    user: User
    tokens: TokenPair


def tokens_issue(*, user: User) -> TokenPair:
    """Issue a new refresh token (recorded so that it can be revoked) and its access token."""
    refresh = RefreshToken.for_user(user)
    return TokenPair(
        access_token=str(refresh.access_token),
        refresh_token=str(refresh),
        expires_in=settings.ACCESS_TOKEN_LIFETIME_SECONDS,
    )


def user_register(*, email: str, password: str, name: str = "") -> AuthResult:
    """Create a `user`-role, `free`-tier account and sign it in."""
    email = normalize_email(email)
    candidate = User(email=email, name=name)
    try:
        validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        raise ApplicationError("VALIDATION_ERROR", exc.messages[0], details={"password": exc.messages}) from None
    try:
        with transaction.atomic():
            if User.objects.filter(email=email).exists():
                raise IntegrityError("duplicate email")
            user = User.objects.create_user(email=email, password=password, name=name)
            tokens = tokens_issue(user=user)
            update_last_login(None, user)
    except IntegrityError:
        raise ApplicationError(
            "CONFLICT", "An account with this email already exists.", details={"email": ["Already registered."]}
        ) from None
    return AuthResult(user=user, tokens=tokens)


def user_login(*, email: str, password: str) -> AuthResult:
    """Check the password of an active account and issue tokens; the same 401 for every failure."""
    user = authenticate(None, email=normalize_email(email), password=password)
    if user is None:
        raise ApplicationError("UNAUTHORIZED", "Invalid email or password.")
    with transaction.atomic():
        tokens = tokens_issue(user=user)
        update_last_login(None, user)
    return AuthResult(user=user, tokens=tokens)


def _decode_refresh_token(raw_token: str) -> dict:
    """Verify signature, expiry and type; the caller still checks revocation."""
    try:
        payload = token_backend.decode(raw_token, verify=True)
    except TokenBackendError:
        raise ApplicationError("UNAUTHORIZED", INVALID_REFRESH_MESSAGE) from None
    if payload.get(settings.SIMPLE_JWT["TOKEN_TYPE_CLAIM"]) != "refresh" or not payload.get("jti"):
        raise ApplicationError("UNAUTHORIZED", INVALID_REFRESH_MESSAGE)
    return payload


def _revoke(outstanding: OutstandingToken) -> bool:
    """Blacklist a refresh token; False if it already was. The unique row makes this atomic."""
    _, created = BlacklistedToken.objects.get_or_create(token=outstanding)
    return created


@transaction.atomic
def tokens_refresh(*, refresh_token: str) -> TokenPair:
    """Rotate: the presented refresh token dies and a new pair is issued.

    Two concurrent refreshes with one token race on the blacklist row: exactly one wins.
    """
    payload = _decode_refresh_token(refresh_token)
    outstanding = OutstandingToken.objects.select_related("user").filter(jti=payload["jti"]).first()
    if outstanding is None or outstanding.user is None or not outstanding.user.is_active:
        raise ApplicationError("UNAUTHORIZED", INVALID_REFRESH_MESSAGE)
    if not _revoke(outstanding):
        raise ApplicationError("UNAUTHORIZED", INVALID_REFRESH_MESSAGE)
    return tokens_issue(user=outstanding.user)


@transaction.atomic
def tokens_revoke(*, user: User, refresh_token: str) -> None:
    """Logout: revoke the caller's refresh token. Revoking an already revoked one is a no-op."""
    payload = _decode_refresh_token(refresh_token)
    outstanding = OutstandingToken.objects.filter(jti=payload["jti"], user=user).first()
    if outstanding is None:
        raise ApplicationError("UNAUTHORIZED", INVALID_REFRESH_MESSAGE)
    _revoke(outstanding)


def _tokens_revoke_all(user: User) -> int:
    live = OutstandingToken.objects.filter(user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True)
    BlacklistedToken.objects.bulk_create([BlacklistedToken(token=t) for t in live], ignore_conflicts=True)
    return len(live)


def user_deactivate(*, user: User) -> User:
    """Block a user: no login, every refresh token revoked, every open socket closed."""
    with transaction.atomic():
        user.is_active = False
        user.save(update_fields=["is_active", "updated_at"])
        _tokens_revoke_all(user)
        user_id = user.pk
        transaction.on_commit(lambda: close_user_sockets(user_id))
    return user


def user_reactivate(*, user: User) -> User:
    """Let a deactivated user log in again (their old tokens stay revoked)."""
    user.is_active = True
    user.save(update_fields=["is_active", "updated_at"])
    return user


def user_update_profile(*, user: User, fields: dict) -> User:
    """Update the caller's `name` and/or `preferences` (only the fields given)."""
    allowed = {"name", "preferences"}
    changed = [field for field in fields if field in allowed]
    for field in changed:
        setattr(user, field, fields[field])
    if changed:
        user.save(update_fields=[*changed, "updated_at"])
    return user


def expired_tokens_prune() -> int:
    """Delete refresh-token records whose lifetime has passed (revoked or not)."""
    deleted, _ = OutstandingToken.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted
