"""JWT authentication: bearer access tokens for REST, `?token=` for WebSockets."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.tokens import AccessToken

from .models import User


class BearerTokenAuthentication(JWTAuthentication):
    """`Authorization: Bearer <access token>`; a refresh token is refused (its type differs)."""

    def get_validated_token(self, raw_token):
        try:
            return AccessToken(raw_token)
        except TokenError:
            raise InvalidToken("Access token is invalid or expired.") from None

    def get_user(self, validated_token):
        try:
            return super().get_user(validated_token)
        except AuthenticationFailed:
            raise AuthenticationFailed("User not found or inactive.") from None


def user_for_access_token(raw_token: str) -> User | None:
    """The active user an access token names, or None for a bad, expired or refresh token."""
    try:
        token = AccessToken(raw_token)
    except TokenError:
        return None
    return User.objects.filter(pk=token.get("user_id"), is_active=True).first()


class QueryStringTokenAuthMiddleware:
    """ASGI middleware: puts the user of `?token=<access token>` in `scope["user"]`.

    A missing or bad token leaves an AnonymousUser; consumers refuse it (CONTRACT §12).
    """

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        raw_token = (query.get("token") or [""])[0]
        user = await database_sync_to_async(user_for_access_token)(raw_token) if raw_token else None
        scope = {**scope, "user": user or AnonymousUser()}
        return await self.inner(scope, receive, send)
